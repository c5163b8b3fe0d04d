"""Gradient routing of the base methods, checked against per-term jax.grad.

For each base: the gradient of every parameter equals the sum of the gradients of the terms
whose window contains it; a term's gradient is exactly zero outside its window (backbone blocks
of other modules, other heads); inside its window it is nonzero; and no module receives
gradient from a later module's term.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_local.engine.fused import plan_loss
from tests import helpers



def _grads(plan, state, batch, terms=None):
  fn = functools.partial(plan_loss, plan, terms=terms)
  grads, _ = jax.grad(fn, has_aux=True)(state.params, state.batch_stats, batch)
  return grads


def _block_norms(grads):
  """Gradient norm per backbone block and per head that has parameters."""
  out = {("backbone", k): float(optax_norm(v)) for k, v in grads["backbone"].items()}
  out.update({("heads", k): float(optax_norm(v)) for k, v in grads["heads"].items()
              if jax.tree.leaves(v)})
  return out


def optax_norm(tree):
  leaves = jax.tree.leaves(tree)
  return jnp.sqrt(sum(jnp.sum(x ** 2) for x in leaves)) if leaves else jnp.zeros(())


@pytest.mark.parametrize("method", ["bp", "greedy", "dgl", "infopro", "predsim"])
def test_gradient_is_sum_of_windowed_terms(method):
  config = helpers.tiny_config(method)
  plan, _, state = helpers.tiny_plan_and_state(config)
  batch = helpers.random_batch()
  total = _grads(plan, state, batch)
  per_term = {t.name: _grads(plan, state, batch, terms=[t]) for t in plan.terms}

  summed = jax.tree.map(lambda *g: sum(g), *per_term.values())
  for a, b in zip(jax.tree.leaves(total), jax.tree.leaves(summed)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  module_of = {b: i for i, m in enumerate(plan.modules) for b in m}
  for term in plan.terms:
    norms = _block_norms(per_term[term.name])
    inside = set(plan.reachable_blocks(term))
    for (kind, name), value in norms.items():
      if kind == "heads":
        expect_nonzero = name == term.head
      else:
        expect_nonzero = name in inside
        if module_of[name] > term.last or module_of[name] < term.first:
          assert value == 0.0, f"{method}: term {term.name} leaks into block {name}"
      if expect_nonzero:
        assert value > 0.0, f"{method}: term {term.name} gives no gradient to {kind} {name}"
      else:
        assert value == 0.0, f"{method}: term {term.name} reaches {kind} {name}"


def test_local_plans_isolate_modules():
  config = helpers.tiny_config("dgl", preset="uniform_k3")
  plan, _, _ = helpers.tiny_plan_and_state(config)
  assert plan.num_modules == 3
  assert [(t.first, t.last) for t in plan.terms] == [(0, 0), (1, 1), (2, 2)]
  assert plan.modules[-1][-1] == "fc"
  bp, _, _ = helpers.tiny_plan_and_state(helpers.tiny_config("bp"))
  assert bp.num_modules == 1 and len(bp.terms) == 1
