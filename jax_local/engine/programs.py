"""The sequential executor's program bodies, one per spec of `engine/schedule.py`, and their
compiled functions (docs/design.md §3.6).

Shapes: N examples, a_i [N,H,W,C] the detached input of module i; params/stats of a module are
tuples over its blocks; gradient buffers are donated from program to program (None before
their first write). A program that completes a gradient adds its squared norm to its `sq`
output, so the step's grad_norm = sqrt(Σ sq) without another pass over the gradients.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jax_local import ema, part_optimizer
from jax_local.engine import forward, step_end
from jax_local.engine import schedule as sched
from jax_local.heads import coefficients
from jax_local.models.backbone import apply_block, apply_with_stats

sg = jax.lax.stop_gradient


def _run_module(blocks, params, stats, h):
  """Blocks of one module in train mode: h [N,...] -> (out, tuple of new block stats)."""
  new = []
  for block, p, s in zip(blocks, params, stats):
    h, ns = apply_block(block, p, s, h, True)
    new.append(ns)
  return h, tuple(new)


def _add(acc, g):
  return g if acc is None else jax.tree.map(jnp.add, acc, g)


def unit(spec: sched.UnitSpec, normalisation, params, stats, head_params, head_stats, a, batch,
         weights, coefs, acc, acc_heads):
  """Joint program of module i: a_{i+1} = E_i(sg(a_i)) under `jax.vjp`, the heads of the terms
  ending at i differentiated, module i's gradient pulled back. batch: "image", "label" [N];
  weights: per term; coefs: per head, its loss coefficients (`coefficients.factor`);
  normalisation: the plan's (mean, std) (`forward.with_image01`).

  Returns (acc, acc_heads, new module stats, new head stats, sg(a_{i+1}), Σ w·loss, squared
  norm of the gradients completed here, per-term metrics, cascade cotangents at a_i).
  """
  batch = forward.with_image01(batch, normalisation)
  fwd = lambda p, x: _run_module(spec.blocks, p, stats, x)

  def heads_loss(outs, hp):   # outs[g]: the module output as seen by group g
    total, metrics, new_hs = jnp.zeros((), jnp.float32), [], list(head_stats)
    for (g, hk), w in zip(spec.terms, weights):
      head = coefficients.bind(spec.heads[hk], coefs[hk])
      (loss, m), new_hs[hk] = apply_with_stats(head, hp[hk], head_stats[hk], outs[g], batch,
                                               train=True)
      total = total + w * loss
      metrics.append(m)
    return total, (total, tuple(new_hs), tuple(metrics))

  if spec.terms:
    out, vjp_fn, new_stats = jax.vjp(fwd, params, a, has_aux=True)
    (g_outs, g_heads), (total, new_hs, metrics) = jax.grad(heads_loss, (0, 1), has_aux=True)(
        (out,) * (1 + spec.num_groups), head_params)
    g_params = vjp_fn(functools.reduce(jnp.add, g_outs))[0]
    cts = tuple(vjp_fn(g)[1] for g in g_outs[1:])
  else:   # no term ends here: forward only
    out, new_stats = fwd(params, a)
    g_params, g_heads, cts = jax.tree.map(jnp.zeros_like, params), (), ()
    total, new_hs, metrics = jnp.zeros((), jnp.float32), (), ()
  acc = tuple(map(_add, acc, g_params))
  acc_heads = tuple(map(_add, acc_heads, g_heads))
  done = ([acc] if spec.final_module else []) + [
      h for h, f in zip(acc_heads, spec.final_heads) if f]
  return (acc, acc_heads, new_stats, new_hs, sg(out), total, step_end.sumsq(done), metrics,
          cts)


def module_forward(spec: sched.ForwardSpec, params, stats, a):
  """Split mode: (sg(E_i(a_i)), new module stats)."""
  out, new_stats = _run_module(spec.blocks, params, stats, a)
  return sg(out), new_stats


def head(spec: sched.HeadSpec, normalisation, head_params, head_stats, h, batch, weight, coefs,
         acc):
  """One term's head on h (a_{i+1}, or a trunk's output), with its loss coefficients `coefs`.
  Returns (acc + head gradient, new head stats, weight·loss, squared norm of acc if final,
  metrics, cotangent at h)."""
  batch = forward.with_image01(batch, normalisation)
  bound = coefficients.bind(spec.head, coefs)

  def loss_fn(hp, h):
    (loss, m), new_stats = apply_with_stats(bound, hp, head_stats, h, batch, train=True)
    return weight * loss, (weight * loss, new_stats, m)

  (g_head, ct), (total, new_hs, metrics) = jax.grad(loss_fn, (0, 1), has_aux=True)(
      head_params, h)
  acc = _add(acc, g_head)
  return acc, new_hs, total, step_end.sumsq([acc] if spec.final else []), metrics, ct


def trunk_forward(spec: sched.TrunkForwardSpec, params, stats, z):
  """(sg(stage(z)), new stage stats); z [N,H,W,C]."""
  out, new_stats = apply_with_stats(spec.stage, params, stats, z, train=True)
  return sg(out), new_stats


def trunk_back(spec: sched.TrunkBackSpec, params, stats, z, ct, acc):
  """Recomputes stage(z) and pulls the cotangent `ct` at its output back to z. Returns (acc +
  the stage's gradient, cotangent at z, squared norm of acc if final)."""
  fwd = lambda p, x: apply_with_stats(spec.stage, p, stats, x, train=True)[0]
  _, vjp_fn = jax.vjp(fwd, params, z)
  g_params, ct_z = vjp_fn(ct)
  acc = _add(acc, g_params)
  return acc, ct_z, step_end.sumsq([acc] if spec.final else [])


def back(spec: sched.BackSpec, params, stats, a, cts, acc):
  """Back program through module m: recomputes E_m(a_m) and pulls the cotangents `cts` at its
  output back. Returns (acc + module m's gradient, cotangents at a_m of the groups that
  continue, squared norm of acc if final)."""
  fwd = lambda p, x: _run_module(spec.blocks, p, stats, x)[0]
  _, vjp_fn = jax.vjp(fwd, params, a)
  acc = tuple(map(_add, acc, vjp_fn(functools.reduce(jnp.add, cts))[0]))
  going_on = cts[:-1] if spec.last_stops else cts
  return (acc, tuple(vjp_fn(ct)[1] for ct in going_on),
          step_end.sumsq([acc] if spec.final else []))


def total(*xs):
  return functools.reduce(jnp.add, xs)


class Programs:
  """The compiled function of each spec: equal specs share one, and so do the updates of parts
  with one optax transformation (`part_optimizer.PartOptimizer.part_tx`)."""

  def __init__(self, plan, tx: part_optimizer.PartOptimizer):
    norm = plan.normalisation
    self._tx = tx
    self._make: dict[type, Callable[[Any], Callable]] = {
        sched.UnitSpec: lambda s: jax.jit(functools.partial(unit, s, norm),
                                          donate_argnums=(8, 9)),
        sched.ForwardSpec: lambda s: jax.jit(functools.partial(module_forward, s)),
        sched.HeadSpec: lambda s: jax.jit(functools.partial(head, s, norm),
                                          donate_argnums=6),
        sched.TrunkForwardSpec: lambda s: jax.jit(functools.partial(trunk_forward, s)),
        sched.TrunkBackSpec: lambda s: jax.jit(functools.partial(trunk_back, s),
                                               donate_argnums=4),
        sched.BackSpec: lambda s: jax.jit(functools.partial(back, s), donate_argnums=4),
        sched.SumSpec: lambda s: jax.jit(total),
        sched.EmaSpec: lambda s: jax.jit(ema.average, static_argnums=2, donate_argnums=0),
        sched.UpdateSpec: lambda s: jax.jit(functools.partial(part_optimizer.apply_part, s),
                                            donate_argnums=(1, 2)),
        sched.FinishSpec: lambda s: jax.jit(functools.partial(step_end.finish, plan),
                                            donate_argnums=1),
    }
    self._compiled: dict[Any, Callable] = {}

  def __getitem__(self, spec) -> Callable:
    key = self._tx.part_tx(spec.part) if isinstance(spec, sched.UpdateSpec) else spec
    if key not in self._compiled:
      self._compiled[key] = self._make[type(spec)](key)
    return self._compiled[key]


def program_key(fn, args):
  """Identifies a compiled program: the jitted function and its arguments' structure, shapes
  and dtypes (Python scalars by type)."""
  leaves, tree = jax.tree.flatten(args)
  return (fn, tree, tuple((tuple(x.shape), str(x.dtype)) if hasattr(x, "shape") else type(x)
                          for x in leaves))
