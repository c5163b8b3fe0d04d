"""The pipelined executor: the plan's modules in S stages on the devices of a ('stage', 'data')
mesh, M micro-batches in flight, every stage computing at once (docs/design.md §3.9).

`engine/pipeline_schedule.py` turns the plan into calls placed on stages; this executor runs
them with the sequential executor's driver. Each program runs on the devices its inputs live on:
a part's parameters, optimizer state and statistics live on its stage (replicated over the
stage's `data` devices), the batch arrives on stage 0, and a transfer call moves a value to the
next stage by `jax.device_put`. Nothing blocks between calls, so the host dispatches stage s's
micro-batch m while stage s-1 computes micro-batch m+1, and the next step's first stage starts
while the last stage finishes this one (no stage waits for a later stage in local learning).
At most two steps are in flight: a step waits for the one before the previous to finish.

With a stage's modules on its devices, the update equals the sequential executor's on the same
micro-batches (sync: the mean of their gradients, one update; async: one update per micro-batch,
as M sequential steps) up to float rounding (tests/test_pipelined.py).
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from jax_local import part_optimizer
from jax_local.engine import executor, programs, sequential, stage_arrays, stages, step_end
from jax_local.engine import pipeline_schedule as psched
from jax_local.engine import schedule as sched
from jax_local.plan import Plan

STAGE_AXIS, DATA_AXIS = "stage", "data"
LOG = logging.getLogger(__name__)  # a child of run_log.LOG ("jax_local"): the run's console
DEFAULTS = {"stages": 2, "boundaries": (), "mode": "sync", "microbatches": 4}


def updates_per_step(mode: str, microbatches: int) -> int:
  """Optimizer updates per step: one per micro-batch in async mode, one in sync mode."""
  return microbatches if mode == "async" else 1


def make_mesh(stages: int, devices=None) -> jax.sharding.Mesh:
  """A ('stage', 'data') mesh: `devices` (default: every device) in `stages` rows, in their
  order (row s: devices [s·D, (s+1)·D)), so that row s holds the rows of a batch sharded over
  `devices` that `stage_arrays.batch_to_first_row` moves from it."""
  devices = jax.devices() if devices is None else list(devices)
  if len(devices) % stages:
    raise ValueError(f"{len(devices)} devices do not split into {stages} stages")
  return jax.sharding.Mesh(np.asarray(devices).reshape(stages, -1), (STAGE_AXIS, DATA_AXIS),
                           axis_types=(AxisType.Auto,) * 2)


def stage_rows(mesh: jax.sharding.Mesh) -> list[jax.sharding.Mesh]:
  """Each stage's row of a ('stage', 'data') mesh as a ('data',) mesh."""
  return [jax.sharding.Mesh(row, (DATA_AXIS,)) for row in mesh.devices]


def metrics(spec: psched.MetricsSpec, step, losses, sqs):
  """(step + 1, metrics) of a pipelined step (`pipeline_schedule.MetricsSpec`)."""
  step, out = step_end.step_metrics(step, losses, sqs)
  return step, {**out, "loss": spec.scale * out["loss"],
                "grad_norm": jnp.sqrt(spec.scale) * out["grad_norm"]}


def _slice(spec: psched.SliceSpec, batch):
  rows = jax.tree.leaves(batch)[0].shape[0] // spec.count
  part = jax.tree.map(lambda x: x[spec.index * rows:(spec.index + 1) * rows], batch)
  return part, part["image"]


def _mean(*trees):
  return jax.tree.map(lambda *xs: sum(xs[1:], xs[0]) / len(xs), *trees)


class StagePrograms(programs.Programs):
  """The sequential executor's programs plus the pipeline's: slices, means, the statistics of a
  stage, the step's metrics, and transfers to a stage's devices of `mesh` (None: no devices, for
  walks on abstract values: a transfer returns its argument). `send(stage, value)` and
  `receive(source, batched) -> value` run the halves of a transfer when each stage runs in a
  process of its own (`pipeline_schedule.process_schedule`, benchmarks/pipeline_processes.py)."""

  def __init__(self, plan, tx, mesh: jax.sharding.Mesh | None,
               send: Callable[[int, Any], Any] | None = None,
               receive: Callable[[int, bool], Any] | None = None):
    super().__init__(plan, tx)
    meshes = [] if mesh is None else stage_rows(mesh)

    def transfer(spec):
      if mesh is None:
        return lambda x: x
      sharding = NamedSharding(meshes[spec.stage], P(DATA_AXIS) if spec.batched else P())
      return lambda x: jax.device_put(x, sharding)

    self._make.update({
        psched.SliceSpec: lambda s: jax.jit(functools.partial(_slice, s)),
        psched.MeanSpec: lambda s: jax.jit(_mean),
        psched.TransferSpec: transfer,
        psched.StatisticsSpec: lambda s: jax.jit(functools.partial(step_end.statistics, plan)),
        psched.MetricsSpec: lambda s: jax.jit(functools.partial(metrics, s)),
        psched.SendSpec: lambda s: functools.partial(send, s.stage),
        psched.ReceiveSpec: lambda s: functools.partial(receive, s.source, s.batched),
    })
    self.meshes = meshes


class PipelinedStep(executor.Executor):
  """(state, batch) -> (state, metrics) with the sequential executor's metric keys; the new
  state's parts live on their stages' devices (and are placed there at the first call).

  boundaries: the first module of stages 1..S-1, or None: balanced by the FLOPs of each
  module's programs (`stages.module_costs`, `stages.balanced`) at the first call. A step makes
  one update per micro-batch in async mode (`updates_per_step` = M), one in sync mode.
  """

  def __init__(self, plan: Plan, tx: part_optimizer.PartOptimizer,
               num_stages: int = 2, boundaries=None, microbatches: int = 1, mode: str = "sync",
               devices=None, split: str = "auto"):
    if mode not in psched.MODES:
      raise ValueError(f"pipeline.mode={mode!r}; valid: {', '.join(psched.MODES)}")
    if boundaries is not None and len(boundaries) != num_stages - 1:
      raise ValueError(f"pipeline.boundaries={tuple(boundaries)} gives {len(boundaries) + 1} "
                       f"stages, pipeline.stages={num_stages}")
    self._plan, self._tx, self._split = plan, tx, split
    self.num_stages, self.microbatches, self.mode = num_stages, microbatches, mode
    self.updates_per_step = updates_per_step(mode, microbatches)
    self.boundaries = None if boundaries is None else tuple(boundaries)
    self._devices = devices
    self.schedule = None
    self._programs: dict = {}   # mesh (None: no devices) -> StagePrograms
    self._in_flight: list = []

  def _build(self, state, batch):
    """The schedule, once the shapes (and so the costs) are known."""
    if self.schedule is not None:
      return
    if self.boundaries is None:
      seq = sequential.SequentialStep(self._plan, self._tx, self._split)
      rows = jax.tree.leaves(batch)[0].shape[0] // self.microbatches
      micro = jax.tree.map(lambda x: jax.ShapeDtypeStruct((rows, *x.shape[1:]), x.dtype), batch)
      abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
      costs = stages.module_costs(seq, abstract, micro)
      self.boundaries = stages.balanced(costs, self.num_stages,
                                        stages.preferred_cuts(self._plan, self.num_stages))
    self.schedule = psched.build(self._plan, self.boundaries, self.microbatches, self.mode,
                                 self._split)
    self._dead = self.schedule.dead_after()
    stage = stages.stage_of(self.boundaries, self._plan.num_modules)
    self._part_stage = {c.program.part: stage[c.module] for c in self.schedule.calls
                        if isinstance(c.program, sched.UpdateSpec)}

  def describe(self, mesh, batch_rows: int) -> str:
    """The placement in words: each stage's modules and devices (a row of `mesh`), and the
    micro-batches of a global batch of `batch_rows` (rows per micro-batch and `data` device)."""
    stage = stages.stage_of(self.boundaries, self._plan.num_modules)
    rows = []
    for s, devices in enumerate(mesh.devices):
      modules = [m for m, t in enumerate(stage) if t == s]
      names = ", ".join(f"{d.platform}:{d.id}" for d in devices)
      rows.append(f"stage {s}: modules {modules[0]}-{modules[-1]} on [{names}]")
    per_device = batch_rows // self.microbatches // mesh.shape[DATA_AXIS]
    updates = "one update per micro-batch" if self.mode == "async" else "one update per step"
    return (f"pipelined executor: {'; '.join(rows)}; {self.microbatches} micro-batches of "
            f"{per_device} examples per device, {self.mode} ({updates})")

  def _stage_programs(self, mesh: jax.sharding.Mesh | None) -> StagePrograms:
    """The programs whose transfers move values to the rows of `mesh` (None: nowhere)."""
    if mesh not in self._programs:
      self._programs[mesh] = StagePrograms(self._plan, self._tx, mesh)
    return self._programs[mesh]

  def _home(self, state, batch, meshes):
    """The state's parts on their stages (replicated over its `data` devices), the step on the
    last stage, the batch sharded over stage 0's (`stage_arrays`: also from arrays that span
    several processes)."""
    put = lambda tree, s: stage_arrays.to_row(tree, NamedSharding(meshes[s], P()))
    placed = {f: {top: {p: put(v, self._part_stage[top, p]) for p, v in parts.items()}
                  for top, parts in getattr(state, f).items()}
              for f in ("params", "opt_state", "batch_stats")}
    placed["step"] = put(state.step, len(meshes) - 1)
    return state.replace(**placed), stage_arrays.batch_to_first_row(batch, meshes, DATA_AXIS)

  def _throttle(self, loss) -> None:
    """Waits for the step before the previous one: at most two steps in flight. `loss` must
    have a copy in this process."""
    self._in_flight.append(loss)
    if len(self._in_flight) > 2:
      jax.block_until_ready(self._in_flight.pop(0))

  def run(self, state, batch, mesh, call: Callable[..., Any] = sequential.execute):
    self._build(state, batch)
    if mesh not in self._programs:   # the first step on this mesh: say where everything runs
      LOG.info("%s", self.describe(mesh, jax.tree.leaves(batch)[0].shape[0]))
    table = self._stage_programs(mesh)
    state, batch = self._home(state, batch, table.meshes)
    env = sequential.step_inputs(self.schedule, state, batch)
    sequential.run_calls(self.schedule.calls, self._dead, table, env, call)
    return sequential.step_results(self.schedule, state, env)

  def _default_mesh(self):
    devices = self._devices or jax.devices()[:self.num_stages]
    return make_mesh(self.num_stages, devices)

  def __call__(self, state, batch):
    """One step on the first S devices (one per stage), or on `devices`."""
    new_state, out = self.run(state, batch, self._default_mesh())
    self._throttle(out["loss"])
    return new_state, out

  def walk(self, state, batch, call: Callable[..., Any]) -> None:
    """The step's calls on abstract `state` and `batch` (ShapeDtypeStructs), with no devices:
    `call(c, fn, *args)` returns each call's abstract outputs; a transfer's `fn` is the
    identity. What `lower` and the memory report (docs/design.md §5) walk."""
    self._build(state, batch)
    env = sequential.step_inputs(self.schedule, state, batch)
    sequential.run_calls(self.schedule.calls, self._dead, self._stage_programs(None), env,
                         call)

  def lower(self, state, batch) -> list[jax.stages.Lowered]:
    lowered = {}

    def call(c, fn, *args):
      if isinstance(c.program, psched.TransferSpec):
        return args[0]
      traced = fn.trace(*args)
      lowered.setdefault(programs.program_key(fn, args), traced)
      return traced.out_info

    self.walk(state, batch, call)
    return [traced.lower() for traced in lowered.values()]

  def placed(self, placement: executor.Placement):
    """The placement's devices in S rows (stage s: its s-th slice of devices, its `data` axis
    sharding the batch inside the stage); each stage's programs run one at a time on CPU when a
    stage has several devices (collectives in flight, docs/design.md §8). The new state and the
    metrics are copied out as the placement has them (the trainer's evaluation and checks read
    them there); the next step takes each part from its stage's copy. The placement's devices
    may belong to several processes (`stage_arrays`)."""
    devices = list(np.asarray(placement.batch.mesh.devices).flat)
    mesh = make_mesh(self.num_stages, devices)
    rows = stage_rows(mesh)
    call = sequential.one_at_a_time if (placement.one_at_a_time and mesh.shape[DATA_AXIS] > 1
                                        ) else sequential.execute

    def step(state, batch):
      new_state, out = self.run(state, batch, mesh, call)
      new_state, out = stage_arrays.to_every_device(
          (new_state, out), rows,
          (placement.state(new_state), jax.tree.map(lambda _: placement.replicated, out)))
      self._throttle(out["loss"])
      return new_state, out

    return step


def make_train_step(plan: Plan, tx: part_optimizer.PartOptimizer, pipeline=None,
                    split: str = "auto") -> PipelinedStep:
  """The pipelined step of a config's `pipeline` section (DEFAULTS where absent)."""
  cfg = {**DEFAULTS, **dict(pipeline or {})}
  return PipelinedStep(plan, tx, cfg["stages"],
                       tuple(cfg["boundaries"]) or None, cfg["microbatches"], cfg["mode"],
                       split=split)
