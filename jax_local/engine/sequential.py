"""The sequential executor: the schedule's program calls, run in order from Python
(docs/design.md §3.6).

`engine/schedule.py` turns the plan into a flat list of calls over named values,
`engine/programs.py` holds the program bodies and their compiled functions; this driver binds
the state and batch to their names, calls each program on its named arguments, stores its
outputs under their names, and drops every value after its last read. XLA thus holds at most
one module's or one head's residuals at a time. Both executors give the same update
(tests/test_sequential.py).
"""
from __future__ import annotations

from typing import Any, Callable

import jax

from jax_local import part_optimizer
from jax_local.engine import executor, programs
from jax_local.engine import schedule as sched
from jax_local.plan import Plan


def execute(call: sched.Call, fn: Callable, *args):
  """Runs `fn(*args)` (dispatched asynchronously)."""
  del call
  return fn(*args)


def one_at_a_time(call: sched.Call, fn: Callable, *args):
  """Runs `fn(*args)` to completion before returning (`executor.Placement.one_at_a_time`)."""
  del call
  return jax.block_until_ready(fn(*args))


def step_inputs(schedule: sched.Schedule, state, batch) -> dict[str, Any]:
  """The values of the schedule's input names: the state's parts, the batch, a_0."""
  env = {"batch": batch, "act/0": batch["image"]}
  fields = schedule.results["state"]
  sched.bind(fields, {f: getattr(state, f) for f in fields}, env)
  return env


def run_calls(calls, dead, programs, env: dict[str, Any], call: Callable[..., Any]) -> None:
  """Runs `calls` in order on the named values `env`: each as `call(c, fn, *args)` on its
  resolved arguments, its outputs stored under their names, then the names in `dead` (per call,
  `Schedule.dead_after`) dropped."""
  for c, gone in zip(calls, dead):
    sched.bind(c.outputs, call(c, programs[c.program], *sched.resolve(c.args, env)), env)
    for name in gone:
      del env[name]


def step_results(schedule: sched.Schedule, state, env: dict[str, Any]):
  """(new state, metrics) from the values held after a schedule's last call."""
  results = schedule.results
  metrics = {f"{prefix}{k}": v for prefix, name in results["metrics"].items()
             for k, v in env[name].items()}
  return state.replace(**sched.resolve(results["state"], env)), metrics


class SequentialStep(executor.Executor):
  """(state, batch) -> (state, metrics), with the fused executor's contract and metric keys."""

  def __init__(self, plan: Plan, tx: part_optimizer.PartOptimizer, split: str = "auto"):
    if not isinstance(tx, part_optimizer.PartOptimizer):
      raise TypeError("the sequential executor updates the parameters part by part: pass "
                      "part_optimizer.PartOptimizer(tx, plan.ema_pairs), not a bare optax "
                      f"transformation ({type(tx).__name__})")
    self.schedule = sched.build(plan, split)
    self.programs = programs.Programs(plan, tx)
    self._dead = self.schedule.dead_after()

  def run(self, state, batch, call: Callable[..., Any] = execute, stop: int | None = None):
    """The step as `call(c, fn, *args)` for each call c of the schedule (up to `stop`); returns
    `(state, metrics)`, or the values still held after call `stop`."""
    env = step_inputs(self.schedule, state, batch)
    run_calls(self.schedule.calls[:stop], self._dead, self.programs, env, call)
    if stop is not None:
      return env
    return step_results(self.schedule, state, env)

  def gradients(self, state, batch):
    """(gradients, new statistics) of a step, before the update: what `jax.grad` of the fused
    executor's `plan_loss` gives. Runs the calls before the first EMA or update program."""
    calls = self.schedule.calls
    start = next(k for k, c in enumerate(calls)
                 if isinstance(c.program, (sched.EmaSpec, sched.UpdateSpec)))
    env = self.run(state, batch, stop=start)
    grads = {}
    for c in calls[start:-1]:
      if isinstance(c.program, sched.UpdateSpec):
        top, part = c.program.part
        grads.setdefault(top, {})[part] = sched.resolve(c.args[0], env)
    return grads, sched.resolve(calls[-1].args[2], env)

  def __call__(self, state, batch):
    return self.run(state, jax.device_put(batch))

  def lower(self, state, batch) -> list[jax.stages.Lowered]:
    lowered = {}

    def call(c, fn, *args):
      del c
      traced = fn.trace(*args)
      lowered.setdefault(programs.program_key(fn, args), traced)
      return traced.out_info

    self.run(state, batch, call)
    return [traced.lower() for traced in lowered.values()]

  def placed(self, placement: executor.Placement):
    """Its inputs are committed global arrays (batch sharded, state replicated), so XLA
    partitions every program from them and its outputs feed the next."""
    call = one_at_a_time if placement.one_at_a_time else execute
    return lambda state, batch: self.run(state, batch, call)


def make_train_step(plan: Plan, tx: part_optimizer.PartOptimizer,
                    split: str = "auto") -> SequentialStep:
  """(state, batch) -> (state, metrics); state is a `jax_local.train_state.TrainState`."""
  return SequentialStep(plan, tx, split)
