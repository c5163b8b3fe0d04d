"""Executors: turn a plan into a training step (`executor.Executor`). All give the same update
for a plan."""
from jax_local.engine import fused, pipelined, sequential
from jax_local.engine.executor import Executor, Placement

EXECUTORS = {"fused": fused.make_train_step, "sequential": sequential.make_train_step,
             "pipelined": pipelined.make_train_step}


def make_train_step(executor: str, plan, tx, pipeline=None) -> Executor:
  """(state, batch) -> (state, metrics) for `executor` in EXECUTORS; pipeline: the config's
  `pipeline` section (the pipelined executor's stages, boundaries, mode, micro-batches)."""
  if executor not in EXECUTORS:
    raise ValueError(f"config.executor={executor!r} is unknown; valid: {', '.join(EXECUTORS)}")
  if executor == "pipelined":
    return pipelined.make_train_step(plan, tx, pipeline)
  return EXECUTORS[executor](plan, tx)


def updates_per_step(executor: str, pipeline=None) -> int:
  """`Executor.updates_per_step` of the step `make_train_step` builds, known before it is built
  (the learning-rate schedule counts updates)."""
  if executor != "pipelined":
    return 1
  cfg = {**pipelined.DEFAULTS, **dict(pipeline or {})}
  return pipelined.updates_per_step(cfg["mode"], cfg["microbatches"])
