"""Stages of a pipelined step: runs of consecutive modules, each on its own devices
(docs/design.md §3.9).

A placement is given by its boundaries: the first module of stages 1..S-1, ascending. A cut
before module b is clean when no loss term's window spans it (HiLo, multilaminar cascades), no
head has terms ending on both sides, and no EMA copy in a head (MAN, LAM) sits on the other side
of its source block. Other cuts run too (the cascade cotangent goes back to the earlier stage,
the source parameters forward), but they make the earlier stage wait for the later one, so the
balanced placement takes clean cuts where the plan has enough of them.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from jax_local.engine import programs
from jax_local.plan import Plan


class PlacementError(ValueError):
  """A placement of modules on stages that the pipelined executor cannot run."""


def stage_of(boundaries: Sequence[int], num_modules: int) -> tuple[int, ...]:
  """The stage of each module: stage s holds modules [boundaries[s-1], boundaries[s])."""
  return tuple(sum(m >= b for b in boundaries) for m in range(num_modules))


def _head_modules(plan: Plan) -> dict[str, set[int]]:
  """Per head, the modules where its terms end (where its program runs)."""
  out: dict[str, set[int]] = {}
  for t in plan.terms:
    out.setdefault(t.head, set()).add(t.last)
  return out


def crossings(plan: Plan, cut: int) -> list[str]:
  """Why a cut before module `cut` is not clean (empty: it is)."""
  why = [f"term {t.name!r} spans modules {t.first}-{t.last}" for t in plan.terms
         if t.first < cut <= t.last]
  why += [f"head {h!r} ends terms at modules {sorted(ms)}"
          for h, ms in _head_modules(plan).items() if min(ms) < cut <= max(ms)]
  module = {b: m for m, blocks in enumerate(plan.modules) for b in blocks}
  for p in plan.ema_pairs:
    ends = _head_modules(plan)[p.head]
    if any(min(e, module[p.source]) < cut <= max(e, module[p.source]) for e in ends):
      why.append(f"head {p.head!r} copies block {p.source!r} of module {module[p.source]}")
  return why


def clean_cuts(plan: Plan) -> tuple[int, ...]:
  """Every module index b in 1..K-1 before which a stage may begin without a term, a head or an
  EMA copy on both sides."""
  return tuple(b for b in range(1, plan.num_modules) if not crossings(plan, b))


def preferred_cuts(plan: Plan, stages: int) -> tuple[int, ...]:
  """The clean cuts if there are at least stages - 1 of them, else every cut."""
  clean = clean_cuts(plan)
  return clean if len(clean) >= stages - 1 else tuple(range(1, plan.num_modules))


def check(k: int, boundaries: Sequence[int]) -> None:
  """Raises PlacementError for boundaries that are not ascending module indices in 1..k-1."""
  bounds = tuple(boundaries)
  if len(bounds) >= k:
    raise PlacementError(f"{len(bounds) + 1} stages for {k} modules; use at most {k} stages")
  if list(bounds) != sorted(set(bounds)) or any(not 0 < b < k for b in bounds):
    raise PlacementError(f"pipeline.boundaries={bounds} must be ascending module indices in "
                         f"1..{k - 1} (the first module of stages 1, 2, ...)")


def balanced(costs: Sequence[float], stages: int, cuts: Sequence[int],
             cut_costs: Mapping[int, float] | None = None) -> tuple[int, ...]:
  """Boundaries among `cuts` that minimise the largest stage cost (costs: per module), by dynamic
  programming over (stages so far, last cut). cut_costs: a cost per cut (the time of its
  transfers, benchmarks/pipeline_model.py) that counts as a stage of its own when the cut is
  taken: the minimised cost is max(largest stage sum, largest chosen cut cost)."""
  if len(cuts) < stages - 1:
    raise PlacementError(f"{stages} stages need {stages - 1} cuts; there are {len(cuts)}: "
                         f"use at most {len(cuts) + 1} stages")
  k = len(costs)
  prefix = [0.0]
  for c in costs:
    prefix.append(prefix[-1] + c)
  seg = lambda a, b: prefix[b] - prefix[a]
  cut = lambda b: (cut_costs or {}).get(b, 0.0)
  ends = [0, *cuts]
  # best[j][e]: (largest stage cost, boundaries) with j cuts, the last one at ends[e]
  best = [{0: (0.0, ())}]
  for _ in range(stages - 1):
    row = {}
    for e_prev, (cost, bounds) in best[-1].items():
      for e in range(e_prev + 1, len(ends)):
        cand = (max(cost, seg(ends[e_prev], ends[e]), cut(ends[e])), bounds + (ends[e],))
        if e not in row or cand < row[e]:
          row[e] = cand
    best.append(row)
  return min((max(cost, seg(ends[e], k)), bounds) for e, (cost, bounds) in best[-1].items())[1]


def module_costs(step, state, batch) -> list[float]:
  """FLOPs of each module's calls in one step of a `sequential.SequentialStep`: XLA's cost
  analysis of each distinct program lowered for the shapes of `state` and `batch` (abstract
  values are enough; nothing is compiled). The step's end (module None) is not counted."""
  found: dict = {}
  per_module: dict[int, float] = {}

  def call(c, fn, *args):
    key = programs.program_key(fn, args)
    if key not in found:
      traced = fn.trace(*args)
      found[key] = (float(traced.lower().cost_analysis().get("flops", 0.0)), traced.out_info)
    flops, out = found[key]
    if c.module is not None:
      per_module[c.module] = per_module.get(c.module, 0.0) + flops
    return out

  step.run(state, batch, call)
  return [per_module.get(m, 0.0) for m in range(max(per_module) + 1)]
