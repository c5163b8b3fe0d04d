"""A cost model of the pipelined executor (docs/design.md §3.9): the step time, throughput and
sync-mode bubble of a plan on S stages at a link bandwidth, from the cost of each program call,
and the boundaries that minimise the slowest stage. Plain Python over the executor's own
schedule (`pipeline_schedule.build`); nothing is compiled here (benchmarks/pipeline_predict.py
times or counts the costs).

Inputs, for micro-batches of n = N/M examples:
  seconds[label]  each call of the sequential schedule (engine/schedule.py) at batch n, by label
                  ("unit 3", "update backbone/s1b0"); the pipelined call "unit 3 @5" costs what
                  "unit 3" costs
  nbytes[name]    each named value at batch n (act/k: module k's detached input [n, H, W, C],
                  what a cut before module k sends per micro-batch)
  B               link bandwidth, bytes/s;  h: host seconds to dispatch one call

Simulation (`simulate`): the calls of consecutive steps in the executor's dispatch order. Each
runs on one queue, in dispatch order: its stage's (a program) or the link (source stage,
destination stage)'s (a transfer; copies overlap compute, as with copy engines):
  issue_i = max(issue_{i-1}, done_{j-3} if call i opens step j) + h
  start_i = max(issue_i, free(queue_i), ready(v) for each value v that call i reads)
  end_i   = start_i + d_i,  d_i = seconds[label_i] | nbytes[v] / B (a transfer of v) | 0
done_j is the end of step j's last call, the metrics the executor waits on (at most two steps in
flight, `pipelined.PipelinedStep.run`). Calls the sequential schedule does not have (micro-batch
slices, means, per-stage statistics and sums, the step's metrics) cost 0, and so do values it
does not have (per-stage sums: scalars).

Closed forms, for clean cuts (no value goes back to an earlier stage), h = 0 and a window of two
steps that does not bind (L1 ≤ 3·P); t_k and u_k are module k's gradient and update seconds
(`module_seconds`), stage s holds the modules K_s:
  W_s = M·Σ_{k∈K_s} t_k + Σ_{k∈K_s} u_k      sync: one update per step
  W_s = M·Σ_{k∈K_s} (t_k + u_k)              async: one update per micro-batch
  X_b = M·(nbytes[act/b] + nbytes[batch])/B the cut before module b: the stage it opens receives
                                             the activation, and its copy of the micro-batch
                                             (labels, images) from stage 0
  P   = max(max_s W_s, max_b X_b)            step time once steps overlap; throughput N / P
                                             (stage 0 sends the micro-batch on a link per stage:
                                             X_b counts it on the cut's link, exact for S = 2, an
                                             upper bound on a link's time for S > 2)
  L1  = (M + S - 1)·T + U                    one sync step from idle, for equal stage times T per
                                             micro-batch and equal updates U, no transfers
  bubble = 1 - Σ_s W_s / (S·L1)              sync mode, a step alone
P has no fill or drain: the next step's first stage starts while the last stage finishes this
one, since in local learning no stage waits for a later one. L1, a step alone, has both.
`best_boundaries` minimises P by dynamic programming (`stages.balanced` with per-cut costs).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Sequence

from jax_local.engine import pipeline_schedule as psched
from jax_local.engine import schedule as sched
from jax_local.engine import stages as stages_lib
from jax_local.plan import Plan

IN_FLIGHT = 2   # steps the executor keeps in flight (`pipelined.PipelinedStep.run`)
STEADY = 16     # steps simulated for the steady-state step time (the last half is averaged)
_MICRO = re.compile(r" @\d+$")


def base_label(label: str) -> str:
  """The sequential call a pipelined call copies: "unit 3 @5" -> "unit 3"."""
  return _MICRO.sub("", label)


def base_name(name: str) -> str:
  """The sequential value a pipelined value copies: "act/3@5>1" -> "act/3"."""
  return name.split(">")[0].split("@")[0]


def module_seconds(schedule: sched.Schedule, seconds: Mapping[str, float],
                   num_modules: int) -> tuple[list[float], list[float]]:
  """(t, u) per module of a sequential schedule: the seconds of its calls before the step's first
  EMA or update call (forward and local backward, once per micro-batch), and of its EMA and
  update calls (once per update). The step's end (module None) is not counted."""
  t, u = [0.0] * num_modules, [0.0] * num_modules
  ending = False
  for c in schedule.calls:
    ending = ending or isinstance(c.program, (sched.EmaSpec, sched.UpdateSpec))
    if c.module is not None:
      (u if ending else t)[c.module] += seconds.get(c.label, 0.0)
  return t, u


def module_work(t: Sequence[float], u: Sequence[float], microbatches: int,
                mode: str) -> list[float]:
  """Per module, its share of W_s: M·t_k + u_k (sync) or M·(t_k + u_k) (async)."""
  m = microbatches
  return [m * a + (b if mode == "sync" else m * b) for a, b in zip(t, u)]


def cut_seconds(nbytes: Mapping[str, float], num_modules: int, microbatches: int,
                bandwidth: float) -> dict[int, float]:
  """X_b per cut b in 1..K-1: M activations act/b and micro-batches over a link of `bandwidth`
  bytes/s."""
  return {b: microbatches * (nbytes[f"act/{b}"] + nbytes["batch"]) / bandwidth
          for b in range(1, num_modules)}


def best_boundaries(work: Sequence[float], cuts_seconds: Mapping[int, float], stages: int,
                    cuts: Sequence[int]) -> tuple[int, ...]:
  """The boundaries among `cuts` that minimise P = max(max_s W_s, max_b X_b)."""
  return stages_lib.balanced(work, stages, cuts, cuts_seconds)


def bottleneck(work: Sequence[float], cuts_seconds: Mapping[int, float],
               boundaries: Sequence[int]) -> float:
  """P of `boundaries` (clean cuts, h = 0)."""
  edges = [0, *boundaries, len(work)]
  return max([sum(work[a:b]) for a, b in zip(edges, edges[1:])]
             + [cuts_seconds[b] for b in boundaries])


@dataclasses.dataclass(frozen=True)
class Timeline:
  """A simulated run: `done` per step (end of its last call), `end` (every queue idle), `busy`
  per stage (seconds of programs over all steps)."""
  done: tuple[float, ...]
  end: float
  busy: tuple[float, ...]


def simulate(schedule: sched.Schedule, stage: Sequence[int], seconds: Mapping[str, float],
             nbytes: Mapping[str, float], bandwidth: float, steps: int,
             dispatch: float = 0.0) -> Timeline:
  """`steps` steps of a pipelined `schedule` (stage: per module) run back to back from idle (see
  the module docstring)."""
  calls = [(c, sched.names(c.args), sched.names(c.outputs)) for c in schedule.calls]
  # the stage holding each value; before its first write in the run, its last writer's
  where = {n: stage[c.module] for c, _, writes in calls for n in writes}
  ready: dict[str, float] = {}
  free: dict[tuple, float] = {}
  busy = [0.0] * (max(stage) + 1)
  host, done = 0.0, []
  for j in range(steps):
    if j > IN_FLIGHT:
      host = max(host, done[j - IN_FLIGHT - 1])
    for c, reads, writes in calls:
      if isinstance(c.program, psched.TransferSpec):
        queue = ("link", where[reads[0]], c.program.stage)
        d = nbytes.get(base_name(reads[0]), 0.0) / bandwidth
      else:
        queue = ("stage", stage[c.module])
        d = seconds.get(base_label(c.label), 0.0)
        busy[queue[1]] += d
      host += dispatch
      start = max([host, free.get(queue, 0.0)] + [ready.get(n, 0.0) for n in reads])
      free[queue] = start + d
      for n in writes:
        ready[n], where[n] = start + d, queue[-1]
      if isinstance(c.program, psched.MetricsSpec):
        done.append(start + d)
  return Timeline(tuple(done), max(free.values()), tuple(busy))


@dataclasses.dataclass(frozen=True)
class Prediction:
  """One placement: `one_step` L1 (a step alone, from idle), `bubble` 1 - Σ busy / (S·L1),
  `step` P (simulated steady state), `calls` per step (the host's share is calls·h)."""
  boundaries: tuple[int, ...]
  one_step: float
  bubble: float
  step: float
  calls: int


def predict(plan: Plan, boundaries: Sequence[int], microbatches: int, mode: str,
            seconds: Mapping[str, float], nbytes: Mapping[str, float], bandwidth: float,
            dispatch: float = 0.0) -> Prediction:
  """The pipelined step of `plan` cut before `boundaries`, simulated one step from idle and
  STEADY steps back to back."""
  schedule = psched.build(plan, boundaries, microbatches, mode)
  stage = stages_lib.stage_of(boundaries, plan.num_modules)
  run = lambda steps: simulate(schedule, stage, seconds, nbytes, bandwidth, steps, dispatch)
  alone, many = run(1), run(STEADY)
  half = STEADY // 2
  step = (many.done[-1] - many.done[-1 - half]) / half
  bubble = 1.0 - sum(alone.busy) / (len(alone.busy) * alone.end)
  return Prediction(tuple(boundaries), alone.end, bubble, step, len(schedule.calls))
