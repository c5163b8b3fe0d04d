"""The pipelined step as a schedule (docs/design.md §3.9): the sequential schedule's gradient
calls copied once per micro-batch, every call on the stage of its module, a transfer call
wherever a value is read on another stage than the one that holds it, and each stage's end
(statistics, EMA copies, updates) on that stage. Plain data, built from a plan alone.

Names beyond the sequential schedule's (docs/design.md §3.6), for M micro-batches of N/M examples:

  batch@m, act/i@m, ct/…@m, z/…@m     micro-batch m's copies of the step-local values (batch@m:
  new_stats/…@m, metrics/…@m, loss/k@m  rows [m·N/M, (m+1)·N/M) of the batch)
  grad/T/P                            sync: one buffer per part, accumulated over micro-batches
  grad/T/P@m                          async: micro-batch m's gradient, consumed by its update
  <name>>s                            a value's copy on stage s (act/3@1>1)
  loss/stage<s>, sq/stage<s>          stage s's Σ w·loss and squared gradient norms

Modes:
- sync: every term weight is divided by M, so the accumulated gradient is the mean of the
  micro-batch gradients; new statistics are the mean over micro-batches of each micro-batch's
  (ghost BatchNorm with M groups, docs/design.md §3.3); one update per stage per step.
- async: each stage applies its BatchNorm rule, EMA copies and updates after every micro-batch:
  M updates per step, each from one micro-batch's gradient.

Calls are ordered as a wavefront: tick t runs micro-batch t - s on stage s, so the host
dispatches each stage's work as soon as its input can exist.
"""
from __future__ import annotations

import dataclasses

from jax_local.engine import schedule as sched
from jax_local.engine import stages as stages_lib
from jax_local.plan import Plan

MODES = ("sync", "async")
BATCHED = ("batch", "act/", "ct/", "z/")   # values with a batch axis (sharded along `data`)


@dataclasses.dataclass(frozen=True)
class SliceSpec:
  """Micro-batch `index` of `count`: (batch rows, their images as a_0)."""
  index: int
  count: int


@dataclasses.dataclass(frozen=True)
class MeanSpec:
  """The mean of its arguments (pytrees of one structure)."""


@dataclasses.dataclass(frozen=True)
class TransferSpec:
  """A copy of its argument on stage `stage`: sharded along `data` if `batched`, else
  replicated over the stage's devices."""
  stage: int
  batched: bool


@dataclasses.dataclass(frozen=True)
class SendSpec:
  """A transfer's half in the process of the stage that holds its argument, when each stage runs
  in a process of its own (`process_schedule`): sends the argument to stage `stage`'s process;
  no outputs."""
  stage: int


@dataclasses.dataclass(frozen=True)
class ReceiveSpec:
  """A transfer's other half, in the process of the stage that reads the copy: no arguments;
  its output is the value stage `source`'s process sent (sharded along `data` if `batched`)."""
  source: int
  batched: bool


@dataclasses.dataclass(frozen=True)
class StatisticsSpec:
  """The BatchNorm rule on one stage's parts (`step_end.statistics`)."""


@dataclasses.dataclass(frozen=True)
class MetricsSpec:
  """Step counter and metrics: loss = scale·Σ losses, grad_norm = sqrt(scale·Σ sqs)."""
  scale: float


def _is_state(name: str) -> bool:
  return name == "step" or name.split("/")[0] in ("params", "opt", "stats")


def rename(tree, f):
  """`tree` (arguments or outputs) with every value name n replaced by f(n), inside views too."""
  def one(leaf):
    if isinstance(leaf, str):
      return f(leaf)
    if isinstance(leaf, sched.At):
      return sched.At(f(leaf.name), leaf.path)
    if isinstance(leaf, sched.Keys):
      return sched.Keys(f(leaf.name), leaf.keys)
    if isinstance(leaf, sched.Union):
      return sched.Union(rename(leaf.parts, f))
    return leaf
  return _map(one, tree)


def _map(f, tree):
  """f on every leaf (name, view, constant, None) of a tuple/dict tree."""
  if isinstance(tree, tuple):
    return tuple(_map(f, x) for x in tree)
  if isinstance(tree, dict):
    return {k: _map(f, v) for k, v in tree.items()}
  return f(tree)


def _fill_accs(args, first_writes):
  """`args` with its None leaves (the gradient buffers a call writes first, in the order of its
  outputs) replaced by those buffers' names: the call then adds to what an earlier micro-batch
  wrote."""
  queue = list(first_writes)

  def one(leaf):
    return queue.pop(0) if leaf is None else leaf

  out = _map(one, args)
  if queue:
    raise ValueError(f"gradient buffers {queue} have no None argument to fill")
  return out


def _restrict(tree, keep):
  """{"backbone": {...}, "heads": {...}} with the parts (top, name) in `keep` only."""
  return {top: {p: v for p, v in parts.items() if (top, p) in keep} for top, parts in tree.items()}


def build(plan: Plan, boundaries, microbatches: int, mode: str,
          split: str = "auto") -> sched.Schedule:
  """The pipelined step of `plan` on stages cut before `boundaries` (checked, `stages.check`),
  the batch in `microbatches` micro-batches, `mode` in MODES."""
  if mode not in MODES:
    raise ValueError(f"pipeline.mode={mode!r}; valid: {', '.join(MODES)}")
  stages_lib.check(plan.num_modules, boundaries)
  k, num = plan.num_modules, microbatches
  stage = stages_lib.stage_of(boundaries, k)
  num_stages = len(boundaries) + 1
  if mode == "sync":
    plan = dataclasses.replace(plan, terms=tuple(dataclasses.replace(t, weight=t.weight / num)
                                                 for t in plan.terms))
  base = sched.build(plan, split)
  first_end = next(i for i, c in enumerate(base.calls)
                   if isinstance(c.program, (sched.EmaSpec, sched.UpdateSpec)))
  grads, ends, finish = base.calls[:first_end], base.calls[first_end:-1], base.calls[-1]
  _, old_stats, new_stats, _, _ = finish.args
  part_module = {c.program.part: c.module for c in ends if isinstance(c.program, sched.UpdateSpec)}
  parts_of = [{p for p, m in part_module.items() if stage[m] == s} for s in range(num_stages)]
  first_module = [stage.index(s) for s in range(num_stages)]

  def local(m):
    keep = lambda n: _is_state(n) or (mode == "sync" and n.startswith("grad/"))
    return lambda n: n if keep(n) else f"{n}@{m}"

  losses = {s: [] for s in range(num_stages)}
  sqs = {s: [] for s in range(num_stages)}
  for c in grads:
    for n in sched.names(c.outputs):
      for kind, acc in (("loss/", losses), ("sq/", sqs)):
        if n.startswith(kind):
          acc[stage[c.module]] += [f"{n}@{m}" for m in range(num)]

  def stage_end(s, m):
    """Stage s's calls after micro-batch m: statistics, EMA copies, updates (after the last
    micro-batch only in sync mode), then its metrics."""
    out = []
    if mode == "sync" and m < num - 1:
      return out
    new_s = _restrict(new_stats, parts_of[s])
    if mode == "sync":
      for n in sched.names(new_s):
        out.append(sched.Call(f"mean {n}", MeanSpec(), tuple(f"{n}@{j}" for j in range(num)),
                              n, first_module[s]))
    else:
      new_s = rename(new_s, local(m))
    old_s = _restrict(old_stats, parts_of[s])
    out.append(sched.Call(f"statistics stage {s}" + (f" @{m}" if mode == "async" else ""),
                          StatisticsSpec(), (old_s, new_s), old_s, first_module[s]))
    for c in ends:
      if stage[c.module] == s:
        rn = local(m) if mode == "async" else (lambda n: n)
        out.append(sched.Call(c.label + (f" @{m}" if mode == "async" else ""), c.program,
                              rename(c.args, rn), rename(c.outputs, rn), c.module))
    if m == num - 1:
      for t in plan.terms:
        if stage[t.last] == s:
          n = f"metrics/{t.name}"
          out.append(sched.Call(f"mean {n}", MeanSpec(), tuple(f"{n}@{j}" for j in range(num)),
                                n, t.last))
      out.append(sched.Call(f"sum losses stage {s}", sched.SumSpec(), tuple(losses[s]),
                            f"loss/stage{s}", first_module[s]))
      out.append(sched.Call(f"sum norms stage {s}", sched.SumSpec(), tuple(sqs[s]),
                            f"sq/stage{s}", first_module[s]))
    return out

  logical = []   # (call, earliest tick), in an order the sequential driver could run
  for m in range(num):
    logical.append((sched.Call(f"slice {m}", SliceSpec(m, num), ("batch",),
                               (f"batch@{m}", f"act/0@{m}"), 0), m))
    written: set[str] = set()
    for c in grads:
      outs = [n for n in sched.names(c.outputs) if n.startswith("grad/")]
      args = c.args
      if mode == "sync" and m > 0:
        args = _fill_accs(args, [n for n in outs if n not in written])
      written.update(outs)
      logical.append((sched.Call(f"{c.label} @{m}", c.program, rename(args, local(m)),
                                 rename(c.outputs, local(m)), c.module), m + stage[c.module]))
    logical += [(c, 0) for s in range(num_stages) for c in stage_end(s, m)]
  logical.append((sched.Call(
      "step and metrics",
      MetricsSpec(1.0 if mode == "sync" else 1.0 / num),
      ("step", tuple(f"loss/stage{s}" for s in range(num_stages)),
       tuple(f"sq/stage{s}" for s in range(num_stages))), ("step", "metrics/step"), k - 1), 0))
  ordered = _wavefront(logical, stage)

  inputs = tuple(n for n in base.inputs if n != "act/0")
  home = {"batch": 0, "step": num_stages - 1}
  for n in inputs:
    if n not in home:
      _, top, part = n.split("/", 2)
      home[n] = stage[part_module[top, part]]
  calls = sched.mark_final(_with_transfers(ordered, stage, home))
  return sched.Schedule(tuple(calls), inputs, base.results)


def holders(schedule: sched.Schedule, stage) -> dict[str, int]:
  """The stage that holds each value name of a pipelined schedule (stage: per module, from
  `stages.stage_of`): the stage of the calls that write it (a transfer writes its copy on the
  stage it sends to), the batch on stage 0. Every part of the state is written by its own stage's
  end (statistics, update; the step counter by the last call), so a state input is held where
  it is written. docs/design.md §3.9, §5."""
  out = {"batch": 0}
  for c in schedule.calls:
    out.update((n, stage[c.module]) for n in sched.names(c.outputs))
  return out


def process_schedule(schedule: sched.Schedule, stage, s: int) -> sched.Schedule:
  """What stage s runs of a pipelined schedule when every stage runs in a process of its own
  (stage: per module, from `stages.stage_of`): the calls of stage s in the schedule's order, a
  transfer as a SendSpec call in the process that holds its argument (`holders`) and as a
  ReceiveSpec call in the process that reads the copy. Inputs and results are the names stage s
  holds (and the batch, bound everywhere and read on stage 0), so `sequential.step_inputs`,
  `run_calls` (with this schedule's `dead_after`) and `step_results` run it as they run the
  whole schedule, giving stage s's parts of the new state and the metrics written on stage s.
  Two processes meet the transfers between them in one order (that of `schedule`), so one FIFO
  channel per direction carries them; with sends that do not wait for the reader, a receive
  waits for its sender to reach that transfer, which needs only transfers earlier in that order:
  the processes cannot deadlock. benchmarks/pipeline_processes.py."""
  hold = holders(schedule, stage)
  calls = []
  for c in schedule.calls:
    if isinstance(c.program, TransferSpec):
      (name,) = c.args
      if hold[name] == s:
        calls.append(dataclasses.replace(c, program=SendSpec(c.program.stage), outputs=None))
      elif c.program.stage == s:
        calls.append(dataclasses.replace(
            c, program=ReceiveSpec(hold[name], c.program.batched), args=()))
    elif stage[c.module] == s:
      calls.append(c)
  mine = lambda n: n == "batch" or hold[n] == s

  def keep(tree):
    return {k: keep(v) if isinstance(v, dict) else v for k, v in tree.items()
            if isinstance(v, dict) or mine(v)}

  results = {"state": keep(schedule.results["state"]),
             "metrics": {p: n for p, n in schedule.results["metrics"].items() if mine(n)}}
  return sched.Schedule(tuple(calls), tuple(n for n in schedule.inputs if mine(n)), results)


def _wavefront(logical, stage):
  """The calls sorted by (tick, stage, logical position). A call's tick is its earliest tick
  (micro-batch m on stage s: m + s) or later: at least a value's writer's and its earlier
  readers' ticks before it writes the value again, plus one where they sit on another stage.
  So every call still follows the calls it depends on, and a stage's next micro-batch is
  dispatched before the later stages' work on the previous one."""
  writer: dict[str, tuple[int, int]] = {}
  readers: dict[str, list[tuple[int, int]]] = {}
  keyed = []
  for pos, (c, earliest) in enumerate(logical):
    s = stage[c.module]
    outs = sched.names(c.outputs)
    reads = sched.names(c.args)
    deps = [writer[n] for n in reads + outs if n in writer]
    deps += [r for n in outs for r in readers.get(n, ())]
    tick = max([earliest] + [t + (ds != s) for t, ds in deps])
    for n in reads:
      readers.setdefault(n, []).append((tick, s))
    for n in outs:
      writer[n], readers[n] = (tick, s), []
    keyed.append(((tick, s, pos), c))
  return [c for _, c in sorted(keyed, key=lambda x: x[0])]


def _with_transfers(calls, stage, home):
  """`calls` with a transfer call before each read of a value on another stage than its holder's
  (one per value and stage while the value is unchanged)."""
  where = dict(home)
  copies: dict[str, dict[int, str]] = {}
  out = []
  for c in calls:
    s = stage[c.module]

    def here(n, c=c, s=s):
      if where[n] == s:
        return n
      if s not in copies.setdefault(n, {}):
        copy = f"{n}>{s}"
        out.append(sched.Call(f"send {n} to stage {s}",
                              TransferSpec(s, n.split("@")[0].startswith(BATCHED)), (n,), copy,
                              c.module))
        copies[n][s], where[copy] = copy, s
      return copies[n][s]

    out.append(dataclasses.replace(c, args=rename(c.args, here)))
    for n in sched.names(c.outputs):
      where[n] = s
      copies.pop(n, None)
  return out
