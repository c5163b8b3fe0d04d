"""The quickstart's table: test errors of trained runs, with memory and step time against BP.

  .venv/bin/python scripts/quickstart_table.py runs/quickstart_bp runs/quickstart_dgl ...

The first run must be BP. Per run (read from its workdir, `jax_local.compare`): the method, the
number of gradient-isolated modules, and the final test error with the running BatchNorm
statistics and with re-estimated ones (README "Two test errors"). Then two columns against BP:
- memory / BP: XLA's compile-time bytes of one training step (`jax_local.memory`) of the run's
  config with the sequential executor (the one that frees each module's activations), divided
  by BP's at the same batch size;
- step time / BP: each run's training step as it trained (its config's executor), timed in this
  one process on one real batch, interleaved over `--rounds` rounds, median ratio.
"""
import argparse
import os
import statistics
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from benchmarks import timing  # noqa: E402
from jax_local import compare, engine, experiment, memory  # noqa: E402
from jax_local.analysis.run_records import read_config  # noqa: E402
from jax_local.data import input_pipeline  # noqa: E402
from jax_local.train_state import init_state  # noqa: E402


def memory_ratio(config) -> float:
  """Sequential-executor step bytes / BP step bytes, compile-only, at the config's batch."""
  if config.method.name == "bp":
    return 1.0
  rows = {r.name: r for r in memory.memory_report(config, ("bp", "sequential"))}
  return rows["sequential"].bytes / rows["bp"].bytes


def step_times(configs, rounds: int, steps_per_round: int) -> list[float]:
  """Median step time of each config's training step, interleaved in this process."""
  dataset = input_pipeline.build_dataset(configs[0].data, configs[0].seed)
  batch = next(dataset.train_batches(0, 0, configs[0].data.batch_size, drop_remainder=True))
  runs = {}
  for i, config in enumerate(configs):
    exp = experiment.build(config, dataset)
    plan, tx = exp.plan, exp.tx
    state = init_state(plan, tx, jax.random.PRNGKey(config.seed), dataset.image_shape)
    step = engine.make_train_step(config.executor, plan, tx)
    state, metrics = step(state, batch)  # compile
    jax.block_until_ready(metrics)
    runs[i] = {"step": step, "state": state}
  timing.time_interleaved(runs, batch, rounds, steps_per_round)
  return [statistics.median(runs[i]["times"]) for i in range(len(configs))]


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("run_dirs", nargs="+", help="workdirs of finished runs, BP first")
  ap.add_argument("--rounds", type=int, default=3)
  ap.add_argument("--steps_per_round", type=int, default=3)
  args = ap.parse_args()
  rows = [compare.read_run(d) for d in args.run_dirs]
  configs = [read_config(d) for d in args.run_dirs]
  if configs[0].method.name != "bp":
    sys.exit(f"error: the first run must be BP (got {rows[0]['method']} in {args.run_dirs[0]})")
  print("measuring memory (compile-only) and step time against BP ...", file=sys.stderr)
  mem = [memory_ratio(c) for c in configs]
  times = step_times(configs, args.rounds, args.steps_per_round)
  cell = lambda v: "n/a" if v is None else f"{v:.2f}"
  lines = ["| method | modules | test error % (running BN) | test error % (re-estimated BN) | "
           "memory / BP | step time / BP |", "|---|---|---|---|---|---|"]
  for r, m, t in zip(rows, mem, times):
    modules = r["split"].split(", ")[-1].split()[0]
    lines.append(f"| {r['method']} | {modules} | {cell(r['final_test_error'])} | "
                 f"{cell(r['final_test_error_bn'])} | {m:.2f} | {t / times[0]:.2f} |")
  print("\n".join(lines))
  print(f"\n{rows[0]['dataset']}, {rows[0]['net']}, {rows[0]['epochs']} epochs, one seed each: "
        "README 'Quickstart' gives the seed-to-seed spread of these numbers. Memory: XLA's "
        "compile-time bytes of one step, sequential executor vs BP. Step time: median of "
        f"{args.rounds} interleaved rounds in one process, jax {jax.__version__}, "
        f"{jax.devices()[0].platform}.")


if __name__ == "__main__":
  main()
