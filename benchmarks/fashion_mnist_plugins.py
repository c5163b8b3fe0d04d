"""The Fashion-MNIST plugin table: BP, each base, each base × plugin, AugLocal (issue 3).

  python benchmarks/fashion_mnist_plugins.py --root=/work/runs/fm_grid --out=/tmp/fm_plugins.md

Phase 1 trains every row with `launch.py --config=configs/fashion_mnist_grid.py:<base>,<plugin>
--workdir=<root>/<base>_<plugin>` (same network, split, data and epochs for all rows; a row whose
workdir already holds summary.json is skipped, an interrupted one resumes from its checkpoint).
Phase 2 times one training step of every row in this one process: each row's first call is
compile + step, then `--rounds` interleaved rounds of `--steps_per_round` steps on the same real
batch, so machine load hits all rows alike; the table gives the median and its ratio to BP.
The workdirs are what `python -m jax_local.compare` and `jax_local.analyze` read.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from configs import fashion_mnist  # noqa: E402
from jax_local import engine, experiment  # noqa: E402
from jax_local.data import input_pipeline  # noqa: E402
from jax_local.train_state import init_state  # noqa: E402
from benchmarks import timing  # noqa: E402

ROWS = (("bp", "none"), ("dgl", "none"), ("dgl", "hpff"), ("dgl", "mlaan"), ("dgl", "man"),
        ("greedy", "none"), ("greedy", "hpff"), ("greedy", "mlaan"), ("greedy", "man"),
        ("infopro", "none"), ("infopro", "hpff"), ("infopro", "mlaan"), ("infopro", "man"),
        ("predsim", "none"), ("predsim", "hpff"), ("predsim", "mlaan"), ("predsim", "man"),
        ("auglocal", "none"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train_row(root: str, base: str, plugin: str) -> dict:
  """Trains one row through launch.py unless finished; returns its summary.json."""
  workdir = os.path.join(root, f"{base}_{plugin}")
  summary = os.path.join(workdir, "summary.json")
  if not os.path.exists(summary):
    cmd = [sys.executable, os.path.join(ROOT, "launch.py"),
           f"--config={os.path.join(ROOT, 'configs/fashion_mnist_grid.py')}:{base},{plugin}",
           f"--workdir={workdir}"]
    print(" ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT)
    print(f"{base}+{plugin}: trained in {time.time() - t0:.0f} s", flush=True)
  with open(summary) as f:
    return json.load(f)


def time_rows(rows, rounds: int, steps_per_round: int) -> dict:
  """Median step time per row, interleaved in this process on one real batch."""
  config = fashion_mnist.get_fashion_mnist_config("bp")
  dataset = input_pipeline.build_dataset(config.data, config.seed)
  batch = next(dataset.train_batches(0, 0, config.data.batch_size, drop_remainder=True))
  runs = {}
  for base, plugin in rows:
    config = fashion_mnist.get_fashion_mnist_config(base, plugin)
    exp = experiment.build(config, dataset)
    plan, tx = exp.plan, exp.tx
    state = init_state(plan, tx, jax.random.PRNGKey(config.seed), dataset.image_shape)
    step = engine.make_train_step(config.executor, plan, tx)
    t0 = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    runs[(base, plugin)] = dict(step=step, state=state, first=time.perf_counter() - t0,
                                times=[], modules=plan.num_modules)
  timing.time_interleaved(runs, batch, rounds, steps_per_round)
  return runs


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--root", default="/work/runs/fm_grid")
  ap.add_argument("--out", default="")
  ap.add_argument("--rows", default="", help="comma list of base+plugin (default: all rows)")
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--steps_per_round", type=int, default=4)
  ap.add_argument("--train_only", action="store_true", help="phase 1 only, no timing")
  args = ap.parse_args()
  rows = ROWS if not args.rows else tuple(
      tuple(r.split("+")) for r in args.rows.split(","))
  summaries = {row: train_row(args.root, *row) for row in rows}
  if args.train_only:
    return
  runs = time_rows(rows, args.rounds, args.steps_per_round)
  bp = statistics.median(runs[("bp", "none")]["times"]) if ("bp", "none") in runs else None
  config = fashion_mnist.get_fashion_mnist_config("dgl")
  lines = [f"Fashion-MNIST, CIFAR ResNet-{config.model.depth}, split `{config.split.preset}` "
           f"(AugLocal `blocks_stem`), {config.num_epochs} epochs on the first "
           f"{config.data.train_subset} training images, batch {config.data.batch_size}, test "
           f"error on the full test split; step time median of {args.rounds} interleaved rounds "
           f"in one process, jax {jax.__version__}, {jax.devices()[0].platform}", "",
           "| base | plugin | modules | final test error (%) | best test error (%) | "
           "step time (s) | step time / BP |", "|---|---|---|---|---|---|---|"]
  for (base, plugin), run in runs.items():
    s = summaries[(base, plugin)]
    t = statistics.median(run["times"])
    ratio = f"{t / bp:.2f}" if bp else "-"
    lines.append(f"| {base} | {plugin} | {run['modules']} | {s['final_test_error']:.2f} | "
                 f"{s['best_test_error']:.2f} | {t:.3f} | {ratio} |")
  timing.emit_table(lines, args.out)


if __name__ == "__main__":
  main()
