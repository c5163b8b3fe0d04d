"""The sequential executor: one jitted unit per module, called in order from Python.

Unit i gets the detached inputs a_f of the terms that END at module i (always a_i itself) and
  - runs the canonical forward a_{i+1} = E_i(sg(a_i)), which gives module i's new BN
    statistics (once per step, as in the fused executor);
  - differentiates Σ weight·loss over the terms ending at i. A cascade term (first f < i)
    recomputes E_f..E_{i-1} from sg(a_f) inside the unit ("recompute" strategy, as the
    PyTorch references do); the host keeps a_f alive until the last unit that needs it;
  - adds the gradients to a donated gradient buffer and returns sg(a_{i+1}).
XLA therefore never sees more than one term window at a time (reference/jax_conventions.md
§7.3). After the last unit one jitted update applies `tx` and the EMA rule, as fused does.

A unit depends only on its structure (window blocks, heads, term offsets), never on block
names, so modules with equal structure and shapes share one compiled program (ResNet-110
K=55 compiles ~7 units, not 54). Term weights are traced arguments.

`SequentialStep.drive(state, batch, call)` is the step written once for two uses: executing
(`call(fn, live, *args) = fn(*args)`) and the compile-only memory report, where `call` compiles
`fn` for abstract args and `live` is every buffer the host holds during the call.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jax_local import ema
from jax_local.engine import forward
from jax_local.models.backbone import apply_block
from jax_local.plan import LossTerm, Plan

sg = jax.lax.stop_gradient


@dataclasses.dataclass(frozen=True)
class UnitSpec:
  """The hashable structure of a unit; equal specs share one jitted function.

  blocks[m]: block modules of window module m (window = modules start..i, i last);
  heads: distinct heads of the terms ending at i; terms[k] = (window offset of first, head
  index); act_offsets: window offsets of the detached inputs the unit receives (ends with i).
  """
  blocks: tuple[tuple[nn.Module, ...], ...]
  heads: tuple[nn.Module, ...]
  terms: tuple[tuple[int, int], ...]
  act_offsets: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Unit:
  """Unit of module `module`: its window starts at module `start`."""
  module: int
  start: int
  block_names: tuple[tuple[str, ...], ...]   # per window module
  head_names: tuple[str, ...]
  terms: tuple[LossTerm, ...]
  spec: UnitSpec


def build_units(plan: Plan) -> list[Unit]:
  units = []
  for i in range(plan.num_modules):
    terms = plan.terms_ending_at(i)
    start = min([t.first for t in terms] + [i])
    head_names = tuple(dict.fromkeys(t.head for t in terms))
    window = plan.modules[start:i + 1]
    spec = UnitSpec(
        blocks=tuple(tuple(plan.backbone.module(b) for b in m) for m in window),
        heads=tuple(plan.heads[h] for h in head_names),
        terms=tuple((t.first - start, head_names.index(t.head)) for t in terms),
        act_offsets=tuple(sorted({t.first - start for t in terms} | {i - start})))
    units.append(Unit(i, start, window, head_names, terms, spec))
  return units


def _run_module(blocks, params, stats, h):
  """Blocks of one module in train mode: h [N,...] -> (out, tuple of new block stats)."""
  new = []
  for block, p, s in zip(blocks, params, stats):
    h, ns = apply_block(block, p, s, h, True)
    new.append(ns)
  return h, tuple(new)


def unit_loss(spec: UnitSpec, params, stats, head_params, head_stats, acts, batch, weights):
  """Σ_k weights[k]·loss_k of the unit's terms, plus the canonical forward of its module.

  params/stats: per window module, a tuple of per-block trees; acts[k] = a_{start +
  act_offsets[k]} [N,H,W,C] (detached here); batch holds "image", "image01", "label" [N].
  Returns `(total, (total, sg(a_{i+1}), new module stats, new head stats, per-term metrics))`.
  """
  a = dict(zip(spec.act_offsets, acts))
  last = len(spec.blocks) - 1
  out, new_stats = _run_module(spec.blocks[last], params[last], stats[last], sg(a[last]))
  new_head_stats = list(head_stats)
  total, metrics = jnp.zeros((), jnp.float32), []
  for (first, hk), w in zip(spec.terms, weights):
    h = out
    if first < last:   # cascade: recompute the earlier window modules from sg(a_first)
      h = sg(a[first])
      for m in range(first, last + 1):
        h, _ = _run_module(spec.blocks[m], params[m], stats[m], h)
    variables = {"params": head_params[hk], "batch_stats": head_stats[hk]}
    (loss, m_k), upd = spec.heads[hk].apply(variables, h, batch, train=True,
                                            mutable=["batch_stats"])
    new_head_stats[hk] = upd.get("batch_stats", {})
    total = total + w * loss
    metrics.append(m_k)
  return total, (total, sg(out), new_stats, tuple(new_head_stats), tuple(metrics))


def _unit_step(spec, mean, std, params, stats, head_params, head_stats, acts, batch, weights,
               acc):
  """One jitted unit: gradients of `unit_loss` added to the donated buffer `acc`."""
  batch = forward.with_image01(batch, mean, std)
  grads, (total, out, new_stats, new_head_stats, metrics) = jax.grad(
      functools.partial(unit_loss, spec), argnums=(0, 2), has_aux=True)(
          params, stats, head_params, head_stats, acts, batch, weights)
  acc = jax.tree.map(jnp.add, acc, grads)
  return acc, new_stats, new_head_stats, out, total, metrics


def _execute(fn, live, *args):
  del live
  return fn(*args)


class SequentialStep:
  """(state, batch) -> (state, metrics), with the fused executor's contract and metric keys."""

  def __init__(self, plan: Plan, tx: optax.GradientTransformation, schedule, mean, std):
    self.plan, self.units = plan, build_units(plan)
    mean, std = tuple(mean), tuple(std)
    self._jitted: dict[UnitSpec, Callable] = {}
    for u in self.units:
      if u.spec not in self._jitted:
        self._jitted[u.spec] = jax.jit(functools.partial(_unit_step, u.spec, mean, std),
                                       donate_argnums=7)
    # a_j is freed after the last unit that reads it
    self._last_use = {}
    for u in self.units:
      for off in u.spec.act_offsets:
        self._last_use[u.start + off] = u.module
    self.zeros = jax.jit(lambda params: jax.tree.map(jnp.zeros_like, params))

    def update(state, grads, new_stats, totals):
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      params = ema.ema_update(plan.ema_pairs, state.params,
                              optax.apply_updates(state.params, updates))
      stats = {"backbone": new_stats["backbone"],
               "heads": {**state.batch_stats["heads"], **new_stats["heads"]}}
      metrics = {"loss": sum(totals, jnp.zeros((), jnp.float32)), "lr": schedule(state.step),
                 "grad_norm": optax.global_norm(grads)}
      return state.replace(step=state.step + 1, params=params, batch_stats=stats,
                           opt_state=opt_state), metrics

    self.update = jax.jit(update, donate_argnums=0)

  @property
  def num_programs(self) -> int:
    """Distinct unit functions (each compiles once per input shape)."""
    return len(self._jitted)

  def unit_fn(self, unit: Unit):
    return self._jitted[unit.spec]

  def drive(self, state, batch, call: Callable[..., Any] = _execute):
    """The step as a sequence of `call(fn, live, *args)`; returns `(state, metrics)`.

    `live` is the tuple of everything the host holds while `fn` runs (state, gradient buffer,
    saved activations, new statistics and metrics so far, batch); `args` are part of it.
    """
    grads, new_stats, totals, metrics = self.accumulate(state, batch, call)
    live = (state, grads, new_stats, totals, metrics, batch)
    state, upd_metrics = call(self.update, live, state, grads, new_stats, totals)
    return state, {**metrics, **upd_metrics}

  def accumulate(self, state, batch, call: Callable[..., Any] = _execute):
    """Runs the units: `(grads, new_stats, per-unit weighted losses, per-term metrics)`.

    grads has the structure of state.params; new_stats holds every block's statistics and
    those of the heads used this step.
    """
    grads = call(self.zeros, (state, batch), state.params)
    grads = {"backbone": dict(grads["backbone"]), "heads": dict(grads["heads"])}
    acts = {0: batch["image"]}
    new_stats = {"backbone": {}, "heads": {}}
    totals, metrics = [], {}
    p_bb, s_bb = state.params["backbone"], state.batch_stats["backbone"]
    p_h, s_h = state.params["heads"], state.batch_stats["heads"]
    for u in self.units:
      names = u.block_names
      args = (tuple(tuple(p_bb[b] for b in m) for m in names),
              tuple(tuple(s_bb[b] for b in m) for m in names),
              tuple(p_h[h] for h in u.head_names), tuple(s_h[h] for h in u.head_names),
              tuple(acts[u.start + off] for off in u.spec.act_offsets), batch,
              tuple(float(t.weight) for t in u.terms),
              (tuple(tuple(grads["backbone"][b] for b in m) for m in names),
               tuple(grads["heads"][h] for h in u.head_names)))
      live = (state, grads, acts, new_stats, totals, metrics, batch)
      acc, stats_i, head_stats, out, total, term_metrics = call(self.unit_fn(u), live, *args)
      for m, g_m in zip(names, acc[0]):
        grads["backbone"].update(zip(m, g_m))
      grads["heads"].update(zip(u.head_names, acc[1]))
      new_stats["backbone"].update(zip(names[-1], stats_i))
      new_stats["heads"].update(zip(u.head_names, head_stats))
      for t, m_t in zip(u.terms, term_metrics):
        metrics.update({f"{t.name}/{k}": v for k, v in m_t.items()})
      totals.append(total)
      acts = {j: a for j, a in acts.items() if self._last_use.get(j, -1) > u.module}
      if u.module + 1 < self.plan.num_modules:
        acts[u.module + 1] = out
    return grads, new_stats, totals, metrics

  def __call__(self, state, batch):
    return self.drive(state, jax.device_put(batch))


def make_train_step(plan: Plan, tx: optax.GradientTransformation, schedule, mean, std):
  """(state, batch) -> (state, metrics); state is a `jax_local.train_state.TrainState`."""
  return SequentialStep(plan, tx, schedule, mean, std)
