"""The sequential executor: jitted programs per module, called in order from Python.

For module i (a "unit"), with a_i its detached input:
  joint mode (default when one light term ends at i, e.g. every base method): one program
    runs the canonical forward a_{i+1} = E_i(sg(a_i)) under `jax.vjp` (module i's new BN
    statistics come from it, as in the fused executor), differentiates
    the heads of the terms that END at i, and returns module i's and the heads' gradients,
    sg(a_{i+1}) and, per cascade group (terms with first f < i, grouped by f), the cotangent
    at a_i;
  split mode (default when two or more terms end at i, HiLo and multilaminar, or a head runs
    copies of backbone blocks, MAN and LAM): a forward program,
    then one program per term's head (gradient of its head, cotangent at a_{i+1}), then a back
    program through module i. Heads then never share memory with each other or with E_i. A
    head with block copies (`head.trunk()`: MAN's branch, LAM's layers) runs as one forward
    program per stage of copies, its inner head, then one back program per stage in reverse
    (recomputing the stage from its saved input), so the copies of different blocks and the
    inner head never share memory either.
Cascade cotangents go down the window by one small "back" program per module m: it recomputes
E_m(a_m) from the saved detached input a_m (the host keeps a_m until its last use) and pulls the
cotangents back, adding module m's gradient. XLA thus holds at most one module's residuals or
one head's at a time. This is the "recompute" strategy of the PyTorch references, without their
recomputation of module i in joint mode. Handing `jax.vjp` residuals of module m to the unit of
i instead would keep the residuals of every module of a window alive between units.
Gradients go into buffers donated from program to program. After the last unit the EMA copies
move toward their sources (one program per copy), then the optimizer runs part by part (one
program per backbone block and per head, `part_optimizer`), then one program updates the BN
statistics and the step's metrics. Both executors give the same update
(tests/test_sequential.py).

Programs depend on structure (blocks, heads, term layout), never on block names, so modules
with equal structure and shapes share one compiled program (ResNet-110 K=55 DGL: 8 programs for
54 modules); so do parts of the optimizer step (`part_optimizer`). Term weights and heads'
loss coefficients (InfoPro's λ, `heads/coefficients.py`) are traced arguments.

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

from jax_local import ema, part_optimizer
from jax_local.engine import forward
from jax_local.heads import coefficients
from jax_local.models.backbone import apply_block, apply_with_stats
from jax_local.plan import LossTerm, Plan

sg = jax.lax.stop_gradient


@dataclasses.dataclass(frozen=True)
class UnitSpec:
  """Joint program of module i: forward, every head, backward. Equal specs share one program.

  heads: distinct heads of the terms ending at i; terms[k] = (group, head index), group 0 for a
  term starting at i, g >= 1 for the g-th cascade first (ascending); final_module / final_heads:
  whether this program completes the gradient of module i / of each head (it then adds their
  squared norm to grad_norm).
  """
  blocks: tuple[nn.Module, ...]
  heads: tuple[nn.Module, ...]
  terms: tuple[tuple[int, int], ...]
  num_groups: int
  final_module: bool
  final_heads: tuple[bool, ...]


@dataclasses.dataclass(frozen=True)
class ForwardSpec:
  """Split mode: forward of module i only."""
  blocks: tuple[nn.Module, ...]


@dataclasses.dataclass(frozen=True)
class HeadSpec:
  """Split mode: one term's head on the (detached) module output."""
  head: nn.Module
  final: bool


@dataclasses.dataclass(frozen=True)
class TrunkSpec:
  """Split mode, one stage of a head's block copies (MAN, LAM: `head.trunk()` is the tuple of
  stages the head runs in order before its inner head; a stage names its variables in
  `variable_names`). The forward program gives z_{s+1} = sg(stage(z_s)), z_0 the module output;
  the back program recomputes stage(z_s) and pulls the cotangent at z_{s+1} back to z_s. final:
  this term's programs complete the head's gradient."""
  stage: nn.Module
  final: bool


@dataclasses.dataclass(frozen=True)
class BackSpec:
  """Back program through module m: `num_in` incoming cotangents at its output, one per group
  of terms (ordered by first, ascending); the last group ends at m if `last_stops`."""
  blocks: tuple[nn.Module, ...]
  num_in: int
  last_stops: bool
  final: bool


@dataclasses.dataclass(frozen=True)
class Unit:
  """The programs of module i: `joint`, or (split mode) `forward` then `heads` (one per term; a
  head with a trunk runs as its stages' forwards, the inner head, the stages' backs in reverse:
  `trunks[n]` not None); then `backs` (m, spec) for m = i (split mode) or i-1, down to the
  smallest first."""
  module: int
  block_names: tuple[str, ...]
  head_names: tuple[str, ...]
  head_coefficients: tuple[tuple[float, ...], ...]   # per head name (coefficients.factor)
  terms: tuple[LossTerm, ...]
  groups: tuple[int, ...]              # distinct firsts of the terms, ascending
  joint: UnitSpec | None
  forward: ForwardSpec | None
  heads: tuple[HeadSpec, ...]
  trunks: tuple[tuple[TrunkSpec, ...] | None, ...]
  backs: tuple[tuple[int, BackSpec], ...]


SPLIT = ("auto", "always", "never")


def build_units(plan: Plan, split: str = "auto") -> list[Unit]:
  """The units of `plan` in call order. split: "auto" runs a module in split mode (its heads
  then never share memory with each other or with the module) when two or more terms end there
  or a head ending there runs copies of backbone blocks (MAN, LAM: as heavy as a module; ResNet-32
  K=16 DGL+MAN at batch 1024: 0.48 of BP joint, 0.30 split), others jointly; "always" / "never"
  force one mode (a module without terms is always joint). In split mode a head with a trunk
  (`head.trunk()`: its block copies, in stages) runs one program per stage forward, one for its
  inner head, one per stage backward, so no two stages and not the inner head share memory
  (ResNet-32 K=16 DGL+MLAAN at batch 1024: 0.444 of BP with a LAM head in one program, 0.323
  in stages; BENCHMARKS.md)."""
  if split not in SPLIT:
    raise ValueError(f"split={split!r}; valid: {', '.join(SPLIT)}")
  heavy_heads = {p.head for p in plan.ema_pairs}   # heads holding block copies
  layout, writes = [], []   # writes[k]: gradients (("m", module) / ("h", head)) call k adds to
  for i in range(plan.num_modules):
    terms = plan.terms_ending_at(i)
    groups = tuple(sorted({t.first for t in terms}))
    auto_joint = len(terms) < 2 and not any(t.head in heavy_heads for t in terms)
    joint = not terms or split == "never" or (split == "auto" and auto_joint)
    if joint:
      writes.append([("m", i)] + [("h", t.head) for t in terms])
    else:
      writes.append([])
      for t in terms:
        w = [("h", t.head)]
        stages = len(plan.heads[t.head].trunk()) if _has_trunk(plan.heads[t.head]) else 0
        writes += [[]] * stages + [w] + [w] * stages
    down = [f for f in groups if f < i] if joint else list(groups)
    backs = list(range(i - 1 if joint else i, down[0] - 1, -1)) if down else []
    writes += [[("m", m)] for m in backs]
    layout.append((i, terms, groups, joint, down, backs))
  last = {w: k for k, ws in enumerate(writes) for w in ws}
  blocks = lambda m: tuple(plan.backbone.module(b) for b in plan.modules[m])
  factored = {name: coefficients.factor(head) for name, head in plan.heads.items()}
  structure = lambda name: factored[name][0]
  units, k = [], 0
  for i, terms, groups, joint, down, backs in layout:
    head_names = tuple(dict.fromkeys(t.head for t in terms))
    spec, fwd, heads, trunks = None, None, [], []
    if joint:
      spec = UnitSpec(blocks(i), tuple(structure(h) for h in head_names),
                      tuple((0 if t.first == i else 1 + down.index(t.first),
                             head_names.index(t.head)) for t in terms),
                      len(down), last[("m", i)] == k,
                      tuple(last[("h", h)] == k for h in head_names))
      k += 1
    else:
      fwd = ForwardSpec(blocks(i))
      k += 1
      for t in terms:
        head = structure(t.head)
        if _has_trunk(head):
          stages = head.trunk()
          if any(coefficients.factor(st)[1] for st in stages):
            raise ValueError(f"head {t.head}: a trunk must not hold loss coefficients")
          final = last[("h", t.head)] == k + 2 * len(stages)
          heads.append(HeadSpec(head.inner, final))
          trunks.append(tuple(TrunkSpec(st, final) for st in stages))
          k += 1 + 2 * len(stages)
        else:
          heads.append(HeadSpec(head, last[("h", t.head)] == k))
          trunks.append(None)
          k += 1
    back_specs = []
    for m in backs:
      active = [f for f in down if f <= m]
      back_specs.append((m, BackSpec(blocks(m), len(active), active[-1] == m,
                                     last[("m", m)] == k)))
      k += 1
    units.append(Unit(i, plan.modules[i], head_names,
                      tuple(factored[h][1] for h in head_names), terms, groups, spec, fwd,
                      tuple(heads), tuple(trunks), tuple(back_specs)))
  return units


def _has_trunk(head: nn.Module) -> bool:
  return callable(getattr(head, "trunk", None))


def _run_module(blocks, params, stats, h):
  """Blocks of one module in train mode: h [N,...] -> (out, tuple of new block stats)."""
  new = []
  for block, p, s in zip(blocks, params, stats):
    h, ns = apply_block(block, p, s, h, True)
    new.append(ns)
  return h, tuple(new)


def _add(acc, g):
  return g if acc is None else jax.tree.map(jnp.add, acc, g)


def _sumsq(trees):
  return sum((jnp.sum(x * x) for x in jax.tree.leaves(trees)), jnp.zeros((), jnp.float32))


def _unit_step(spec: UnitSpec, mean, std, params, stats, head_params, head_stats, a, batch,
               weights, coefs, acc, acc_heads):
  """Unit of module i. params/stats: tuples over module i's blocks; a = a_i [N,H,W,C];
  batch: "image", "label" [N]; weights: per term; coefs: per head, its loss coefficients
  (`coefficients.factor`); acc/acc_heads: gradient buffers (donated; None where no earlier
  program wrote one).

  Returns (acc, acc_heads, new module stats, new head stats, sg(a_{i+1}), Σ w·loss, squared
  norm of the gradients completed here, per-term metrics, cascade cotangents at a_i).
  """
  batch = forward.with_image01(batch, mean, std)
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
  return (acc, acc_heads, new_stats, new_hs, sg(out), total, _sumsq(done), metrics, cts)


def _forward_step(spec: ForwardSpec, params, stats, a):
  """Split mode: (sg(E_i(a_i)), new module stats)."""
  out, new_stats = _run_module(spec.blocks, params, stats, a)
  return sg(out), new_stats


def _head_step(spec: HeadSpec, mean, std, head_params, head_stats, h, batch, weight, coefs,
               acc):
  """Split mode: one term's head on h = a_{i+1}, with its loss coefficients `coefs`. Returns
  (acc + head gradient, new head stats, weight·loss, squared norm of acc if final, metrics,
  cotangent at h)."""
  batch = forward.with_image01(batch, mean, std)
  head = coefficients.bind(spec.head, coefs)

  def loss_fn(hp, h):
    (loss, m), new_stats = apply_with_stats(head, hp, head_stats, h, batch, train=True)
    return weight * loss, (weight * loss, new_stats, m)

  (g_head, ct), (total, new_hs, metrics) = jax.grad(loss_fn, (0, 1), has_aux=True)(
      head_params, h)
  acc = _add(acc, g_head)
  return acc, new_hs, total, _sumsq([acc] if spec.final else []), metrics, ct


def _trunk_forward_step(spec: TrunkSpec, params, stats, z):
  """Split mode: (sg(stage(z)), new stage stats); z [N,H,W,C]."""
  out, new_stats = apply_with_stats(spec.stage, params, stats, z, train=True)
  return sg(out), new_stats


def _trunk_back_step(spec: TrunkSpec, params, stats, z, ct, acc):
  """Recomputes stage(z) and pulls the cotangent `ct` at its output back to z. Returns (acc +
  the stage's gradient, cotangent at z, squared norm of acc if final)."""
  fwd = lambda p, x: apply_with_stats(spec.stage, p, stats, x, train=True)[0]
  _, vjp_fn = jax.vjp(fwd, params, z)
  g_params, ct_z = vjp_fn(ct)
  acc = _add(acc, g_params)
  return acc, ct_z, _sumsq([acc] if spec.final else [])


def _back_step(spec: BackSpec, params, stats, a, cts, acc):
  """Back program through module m: recomputes E_m(a_m) and pulls the cotangents `cts` at its
  output back. Returns (acc + module m's gradient, cotangents at a_m of the groups that
  continue, squared norm of acc if final)."""
  fwd = lambda p, x: _run_module(spec.blocks, p, stats, x)[0]
  _, vjp_fn = jax.vjp(fwd, params, a)
  acc = tuple(map(_add, acc, vjp_fn(functools.reduce(jnp.add, cts))[0]))
  going_on = cts[:-1] if spec.last_stops else cts
  return acc, tuple(vjp_fn(ct)[1] for ct in going_on), _sumsq([acc] if spec.final else [])


def _execute(fn, live, *args):
  del live
  return fn(*args)


class SequentialStep:
  """(state, batch) -> (state, metrics), with the fused executor's contract and metric keys."""

  def __init__(self, plan: Plan, tx: part_optimizer.PartOptimizer, schedule, mean, std,
               split: str = "auto"):
    if not isinstance(tx, part_optimizer.PartOptimizer):
      raise TypeError("the sequential executor updates the parameters part by part: pass "
                      "part_optimizer.PartOptimizer(tx, plan.ema_pairs), not a bare optax "
                      f"transformation ({type(tx).__name__})")
    self.plan, self.units = plan, build_units(plan, split)
    mean, std = tuple(mean), tuple(std)
    self._jitted: dict[Any, Callable] = {}
    jit = lambda spec, fn, donate: self._jitted.setdefault(spec, jax.jit(fn, donate_argnums=donate))
    for u in self.units:
      if u.joint:
        jit(u.joint, functools.partial(_unit_step, u.joint, mean, std), (8, 9))
      else:
        jit(u.forward, functools.partial(_forward_step, u.forward), ())
        for h in u.heads:
          jit(h, functools.partial(_head_step, h, mean, std), 6)
        for t in (t for stages in filter(None, u.trunks) for t in stages):
          jit(("forward", t), functools.partial(_trunk_forward_step, t), ())
          jit(("back", t), functools.partial(_trunk_back_step, t), 4)
      for _, b in u.backs:
        jit(b, functools.partial(_back_step, b), 4)
    self._sum = jax.jit(lambda *xs: functools.reduce(jnp.add, xs))
    # a_j is freed after the last program that reads it
    self._last_use = {}
    for u in self.units:
      for m in [u.module] + [m for m, _ in u.backs]:
        self._last_use[m] = u.module
    self.call_labels: list[str] = []
    self.tx = tx
    self._ema = jax.jit(ema.average, static_argnums=2, donate_argnums=0)
    self._part_update: dict[Any, Callable] = {}   # per part transformation

    def finish(step, stats, new_stats, totals, sqs):
      stats = {"backbone": forward.repeat_bn_updates(plan, stats["backbone"],
                                                     new_stats["backbone"]),
               "heads": {**stats["heads"], **new_stats["heads"]}}
      metrics = {"loss": sum(totals, jnp.zeros((), jnp.float32)), "lr": schedule(step),
                 "grad_norm": jnp.sqrt(sum(sqs, jnp.zeros((), jnp.float32)))}
      return step + 1, stats, metrics

    self.finish = jax.jit(finish, donate_argnums=1)

  @property
  def num_programs(self) -> int:
    """Distinct unit and back functions (each compiles once per input shape)."""
    return len(self._jitted)

  def drive(self, state, batch, call: Callable[..., Any] = _execute):
    """The step as a sequence of `call(fn, live, *args)`; returns `(state, metrics)`.

    `live` is a dict of everything the host holds while `fn` runs ("state", "grads" buffer,
    saved "acts", cascade "cotangents", "other": new statistics and metrics so far, "batch");
    `args` are part of it. `self.call_labels` names the calls of the last drive, in order.
    """
    grads, new_stats, totals, sqs, metrics = self.accumulate(state, batch, call)
    other = (new_stats, totals, sqs, metrics)
    params, opt_state = self.update(state, grads, batch, other, call)
    live = {"state": (state.step, state.batch_stats), "params": params, "opt_state": opt_state,
            "other": other, "batch": batch}
    self.call_labels.append("statistics and metrics")
    step, stats, upd_metrics = call(self.finish, live, state.step, state.batch_stats, new_stats,
                                    totals, sqs)
    state = state.replace(step=step, params=params, batch_stats=stats, opt_state=opt_state)
    return state, {**metrics, **upd_metrics}

  def update(self, state, grads, batch, other, call: Callable[..., Any] = _execute):
    """The optimizer step, one program per part (`part_optimizer`; parts of equal structure
    share a compiled program), after the EMA copies have moved toward their sources' pre-step
    parameters (one program per copy; the optimizer leaves copies as they are, so this is the
    fused executor's rule). `grads` is emptied part by part, so each part's gradient is freed
    once applied; the old parameters and optimizer state of a part are donated to its program.
    Returns (params, opt_state)."""
    params = {top: dict(tree) for top, tree in state.params.items()}
    opt_state = {top: dict(tree) for top, tree in state.opt_state.items()}
    live = lambda: {"state": (state.step, state.batch_stats), "params": params,
                    "opt_state": opt_state, "grads": grads, "other": other, "batch": batch}
    for pair in self.plan.ema_pairs:
      self.call_labels.append(f"ema {pair.head}/{'/'.join(pair.path)}")
      copy = ema.get_path(params["heads"][pair.head], pair.path)
      new = call(self._ema, live(), copy, params["backbone"][pair.source], pair.decay)
      params["heads"][pair.head] = ema.set_path(params["heads"][pair.head], pair.path, new)
    for top, tree in params.items():
      for name in tree:
        tx = self.tx.part_tx((top, name))
        if tx not in self._part_update:
          self._part_update[tx] = jax.jit(functools.partial(part_optimizer.apply_part, tx),
                                          donate_argnums=(1, 2))
        self.call_labels.append(f"update {top}/{name}")
        tree[name], opt_state[top][name] = call(self._part_update[tx], live(),
                                                grads[top][name], opt_state[top][name],
                                                tree[name])
        del grads[top][name]
    return params, opt_state

  def accumulate(self, state, batch, call: Callable[..., Any] = _execute):
    """Runs the units: `(grads, new_stats, per-unit Σ w·loss, squared norms of completed
    gradients, per-term metrics)`; grads has the structure of state.params."""
    self.call_labels = []
    gb, gh = {}, {}   # gradient buffers of blocks and heads, filled program by program
    acts = {0: batch["image"]}
    new_stats = {"backbone": {}, "heads": {}}
    totals, sqs, metrics = [], [], {}
    p_bb, s_bb = state.params["backbone"], state.batch_stats["backbone"]
    p_h, s_h = state.params["heads"], state.batch_stats["heads"]
    block_tree = lambda tree, names: tuple(tree.get(b) for b in names)
    for u in self.units:
      i, names = u.module, u.block_names
      live = {"state": state, "grads": (gb, gh), "acts": acts,
              "other": (new_stats, totals, sqs, metrics), "batch": batch}
      if u.joint:
        self.call_labels.append(f"unit {i}")
        (acc, acc_h, stats_i, head_stats, out, total, sq, term_metrics, cts) = call(
            self._jitted[u.joint], live, block_tree(p_bb, names), block_tree(s_bb, names),
            block_tree(p_h, u.head_names), block_tree(s_h, u.head_names), acts[i], batch,
            tuple(float(t.weight) for t in u.terms), u.head_coefficients, block_tree(gb, names),
            block_tree(gh, u.head_names))
        gb.update(zip(names, acc))
        gh.update(zip(u.head_names, acc_h))
        new_stats["heads"].update(zip(u.head_names, head_stats))
        for t, m_t in zip(u.terms, term_metrics):
          metrics.update({f"{t.name}/{k}": v for k, v in m_t.items()})
        totals.append(total)
        sqs.append(sq)
      else:
        self.call_labels.append(f"forward {i}")
        out, stats_i = call(self._jitted[u.forward], live, block_tree(p_bb, names),
                            block_tree(s_bb, names), acts[i])
        term_cts = []
        for t, h, tr in zip(u.terms, u.heads, u.trunks):
          live = {**live, "out": out, "cotangents": term_cts}
          args = (float(t.weight), u.head_coefficients[u.head_names.index(t.head)])
          if tr is None:
            self.call_labels.append(f"head {t.name}")
            acc_h, hs, total, sq, m_t, ct = call(
                self._jitted[h], live, p_h[t.head], s_h[t.head], out, batch, *args,
                gh.get(t.head))
            gh[t.head] = acc_h
            metrics.update({f"{t.name}/{k}": v for k, v in m_t.items()})
            totals.append(total)
            sqs.append(sq)
          else:
            ct, hs = self._trunked_head(call, live, t, tr, h, out, batch, args, state, gh,
                                        metrics, totals, sqs)
          new_stats["heads"][t.head] = hs
          term_cts.append(ct)
        cts = []
        for f in u.groups:
          group = [ct for t, ct in zip(u.terms, term_cts) if t.first == f]
          if len(group) > 1:
            self.call_labels.append(f"sum group {f}")
            group = [call(self._sum, {**live, "cotangents": (cts, term_cts)}, *group)]
          cts.append(group[0])
        cts = tuple(cts)
        del term_cts, group
      new_stats["backbone"].update(zip(names, stats_i))
      for m, b in u.backs:
        names_m = self.plan.modules[m]
        self.call_labels.append(f"back {m} (unit {i})")
        live = {"state": state, "grads": (gb, gh), "acts": acts, "cotangents": cts, "out": out,
                "other": (new_stats, totals, sqs, metrics), "batch": batch}
        acc, cts, sq = call(self._jitted[b], live, block_tree(p_bb, names_m),
                            block_tree(s_bb, names_m), acts[m], cts, block_tree(gb, names_m))
        gb.update(zip(names_m, acc))
        sqs.append(sq)
      acts = {j: a for j, a in acts.items() if self._last_use[j] > i}
      if i + 1 < self.plan.num_modules:
        acts[i + 1] = out
    grads = {"backbone": {n: gb[n] for n in p_bb}, "heads": {n: gh[n] for n in p_h}}
    return grads, new_stats, totals, sqs, metrics

  def _trunked_head(self, call, live, term, stages, inner, out, batch, args, state, gh,
                    metrics, totals, sqs):
    """The programs of `term`'s head with trunk stages `stages` on the module output `out`:
    stage forwards, inner head, stage backs in reverse. Adds the head's gradient to gh; appends
    losses, squared norms and metrics to totals, sqs, metrics; returns (cotangent at out, new
    head stats)."""
    part = lambda tree, spec: {k: tree[k] for k in spec.stage.variable_names if k in tree}
    params = state.params["heads"][term.head]
    stats = state.batch_stats["heads"][term.head]
    acc = dict(gh.get(term.head) or {})
    zs, new_stats = [out], {}
    for n, spec in enumerate(stages):
      self.call_labels.append(f"trunk forward {n} {term.name}")
      z, stage_stats = call(self._jitted[("forward", spec)], {**live, "trunk": zs},
                            part(params, spec), part(stats, spec), zs[-1])
      zs.append(z)
      new_stats.update(stage_stats)
    self.call_labels.append(f"head {term.name}")
    acc["inner"], inner_stats, total, sq, m_t, ct = call(
        self._jitted[inner], {**live, "trunk": zs}, params["inner"], stats.get("inner", {}),
        zs[-1], batch, *args, acc.get("inner"))
    if "inner" in stats:
      new_stats["inner"] = inner_stats
    metrics.update({f"{term.name}/{k}": v for k, v in m_t.items()})
    totals.append(total)
    sqs.append(sq)
    for n in reversed(range(len(stages))):
      spec = stages[n]
      self.call_labels.append(f"trunk back {n} {term.name}")
      live_n = {**live, "trunk": zs[:n + 1], "cotangents": (live["cotangents"], ct),
                "head_grads": acc}
      g_stage, ct, sq = call(self._jitted[("back", spec)], live_n, part(params, spec),
                             part(stats, spec), zs[n], ct, part(acc, spec) or None)
      acc.update(g_stage)
      sqs.append(sq)
    gh[term.head] = acc
    return ct, new_stats

  def __call__(self, state, batch):
    return self.drive(state, jax.device_put(batch))

  def lower(self, state, batch) -> list[jax.stages.Lowered]:
    """Every distinct program of a step, lowered for `state` and `batch` (abstract shapes are
    enough; nothing runs): the counterpart of `jax.jit(step).lower(...)` for compile checks."""
    lowered = {}

    def call(fn, live, *args):
      del live
      traced = fn.trace(*args)
      lowered.setdefault(program_key(fn, args), traced)
      return traced.out_info

    self.drive(state, batch, call)
    return [traced.lower() for traced in lowered.values()]


def program_key(fn, args):
  """Identifies a compiled program: the jitted function and its arguments' structure, shapes
  and dtypes (Python scalars by type)."""
  leaves, tree = jax.tree.flatten(args)
  return (fn, tree, tuple((tuple(x.shape), str(x.dtype)) if hasattr(x, "shape") else type(x)
                          for x in leaves))


def make_train_step(plan: Plan, tx: part_optimizer.PartOptimizer, schedule, mean, std,
                    split: str = "auto"):
  """(state, batch) -> (state, metrics); state is a `jax_local.train_state.TrainState`."""
  return SequentialStep(plan, tx, schedule, mean, std, split)
