"""The fused executor: every loss term of the plan in one jitted step with one `jax.grad`.

XLA shares the forward computations; gradient isolation comes from the stop_gradient at each
term's first module. This does not realise the full memory savings of local learning
(docs/jax_notes.md §7.3): the sequential executor does.
"""
from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from jax_local import ema
from jax_local.engine import executor, forward, step_end
from jax_local.plan import LossTerm, Plan


def plan_loss(plan: Plan, params, stats, batch, terms: Sequence[LossTerm] | None = None):
  """Σ_t weight_t · loss_t over `terms` (default: all); returns `(total, (new_stats, metrics))`.

  metrics holds "<term>/<metric>" for every term plus "loss" (the weighted total).
  """
  terms = plan.terms if terms is None else terms
  outputs, backbone_stats = forward.canonical_forward(plan, params, stats, batch["image"])
  new_stats = {"backbone": backbone_stats, "heads": dict(stats["heads"])}
  total = jnp.zeros((), jnp.float32)
  metrics = {}
  for term in terms:
    h = forward.term_features(plan, term, params, stats, outputs)
    loss, term_metrics, head_stats = forward.apply_head(plan, term, params, stats, h, batch)
    if head_stats:
      new_stats["heads"][term.head] = head_stats
    total = total + term.weight * loss
    metrics.update({f"{term.name}/{k}": v for k, v in term_metrics.items()})
  metrics["loss"] = total
  return total, (new_stats, metrics)


class FusedStep(executor.Executor):
  """One jitted step: `jax.grad` of `plan_loss`, then `apply_gradients`; the state is donated."""

  def __init__(self, plan: Plan, tx: optax.GradientTransformation):
    def train_step(state, batch):
      batch = forward.with_image01(batch, plan.normalisation)
      loss_fn = functools.partial(plan_loss, plan)
      grads, (new_stats, metrics) = jax.grad(loss_fn, has_aux=True)(
          state.params, state.batch_stats, batch)
      return apply_gradients(plan, tx, state, grads, new_stats, metrics)

    self._step = train_step
    self._jitted = jax.jit(train_step, donate_argnums=0)

  def __call__(self, state, batch):
    return self._jitted(state, batch)

  def lower(self, state, batch) -> list[jax.stages.Lowered]:
    return [self._jitted.lower(state, batch)]

  def placed(self, placement: executor.Placement):
    """The step jitted with in_shardings (state as placed, batch sharded) and out_shardings
    (state as placed, metrics replicated), built for the state's structure at the first call."""
    jitted = []

    def step(state, batch):
      if not jitted:
        shardings = placement.state(state)
        jitted.append(jax.jit(self._step, in_shardings=(shardings, placement.batch),
                              out_shardings=(shardings, placement.replicated),
                              donate_argnums=0))
      return jitted[0](state, batch)

    return step


def make_train_step(plan: Plan, tx: optax.GradientTransformation) -> FusedStep:
  """(state, batch) -> (state, metrics); state is a `jax_local.train_state.TrainState`."""
  return FusedStep(plan, tx)


def apply_gradients(plan: Plan, tx, state, grads, new_stats, metrics):
  """The step after the gradient: the optimizer, the EMA copies (toward their sources' pre-step
  parameters), then the end shared with the sequential executor (`step_end.finish`: BN rule,
  step and grad_norm). new_stats / metrics: the aux output of `plan_loss`. Returns (new
  state, metrics)."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = ema.ema_update(plan.ema_pairs, state.params,
                          optax.apply_updates(state.params, updates))
  step, stats, end = step_end.finish(plan, state.step, state.batch_stats, new_stats,
                                     (metrics["loss"],), (step_end.sumsq(grads),))
  new_state = state.replace(step=step, params=params, batch_stats=stats, opt_state=opt_state)
  return new_state, {**metrics, **end}
