"""Executors: turn a plan into a training step (`executor.Executor`). All give the same update
for a plan."""
from jax_local.engine import fused, sequential
from jax_local.engine.executor import Executor, Placement

EXECUTORS = {"fused": fused.make_train_step, "sequential": sequential.make_train_step}


def make_train_step(executor: str, plan, tx, schedule, mean, std) -> Executor:
  """(state, batch) -> (state, metrics) for `executor` in EXECUTORS."""
  if executor not in EXECUTORS:
    raise ValueError(f"config.executor={executor!r} is unknown; valid: {', '.join(EXECUTORS)}")
  return EXECUTORS[executor](plan, tx, schedule, mean, std)
