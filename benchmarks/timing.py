"""Shared by the benchmarks: interleaved step timing in one process, and table output."""
import time

import jax


def timed_steps(step, state, batch, steps: int):
  """(seconds, state): `steps` training steps on `batch` dispatched without blocking, then one
  block on the last state and metrics."""
  t0 = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  return time.perf_counter() - t0, state


def time_interleaved(runs: dict, batch, rounds: int, steps_per_round: int) -> None:
  """Times every run's training step on `batch`, interleaved so that a change of machine load
  hits all runs alike: `rounds` rounds, in each of which every run takes `steps_per_round`
  steps. runs: name -> dict with "step" ((state, batch) -> (state, metrics)) and "state";
  appends each round's mean step time (s) to run["times"] and keeps the last state."""
  for _ in range(rounds):
    for run in runs.values():
      seconds, run["state"] = timed_steps(run["step"], run["state"], batch, steps_per_round)
      run.setdefault("times", []).append(seconds / steps_per_round)


def emit_table(lines, out: str = "") -> None:
  """Prints markdown table `lines` and, if `out` is given, writes them to that file."""
  table = "\n".join(lines)
  print(table)
  if out:
    with open(out, "w") as f:
      f.write(table + "\n")
