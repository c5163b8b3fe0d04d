"""One epoch of Fashion-MNIST with a CIFAR ResNet for BP and each base, in one process.

For each method: train one epoch (full training split unless --train_subset), evaluate on the
full test split, then time steps. Step times are measured after training, in interleaved rounds
(every method runs `--steps_per_round` steps per round, `--rounds` rounds) so a change of machine
load affects all methods alike; the table reports the median step time and its ratio to BP.

  python benchmarks/fashion_mnist_epoch.py --depth=32 --preset=uniform_k3 --out=/tmp/fm_epoch.md
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402

from configs import fashion_mnist_quickstart  # noqa: E402
from jax_local import engine, evaluation, experiment  # noqa: E402
from jax_local.data import input_pipeline  # noqa: E402
from jax_local.train_state import init_state  # noqa: E402
from benchmarks import timing  # noqa: E402

METHODS = ("bp", "greedy", "dgl", "infopro", "predsim")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--depth", type=int, default=32)
  ap.add_argument("--preset", default="uniform_k3")
  ap.add_argument("--batch", type=int, default=128)
  ap.add_argument("--train_subset", type=int, default=0)
  ap.add_argument("--methods", default=",".join(METHODS))
  ap.add_argument("--rounds", type=int, default=5)
  ap.add_argument("--steps_per_round", type=int, default=5)
  ap.add_argument("--out", default="")
  args = ap.parse_args()

  base = fashion_mnist_quickstart.get_config()
  base.num_epochs, base.model.depth, base.split.preset = 1, args.depth, args.preset
  base.data.batch_size, base.data.train_subset = args.batch, args.train_subset
  dataset = input_pipeline.build_dataset(base.data, base.seed)
  runs = {}
  for method in args.methods.split(","):
    config = fashion_mnist_quickstart.get_config(method)
    config.unlock()
    config.num_epochs, config.model.depth, config.split.preset = 1, args.depth, args.preset
    config.data.batch_size, config.data.train_subset = args.batch, args.train_subset
    exp = experiment.build(config, dataset)
    plan, tx = exp.plan, exp.tx
    state = init_state(plan, tx, jax.random.PRNGKey(config.seed), dataset.image_shape)
    step = engine.make_train_step(config.executor, plan, tx)
    t0 = time.time()
    for batch in dataset.train_batches(0, 0, args.batch, drop_remainder=True):
      state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    train_s = time.time() - t0
    result = evaluation.evaluate(evaluation.make_eval_step(plan), state, dataset, 1000)
    runs[method] = dict(plan=plan, state=state, step=step, train_s=train_s, times=[],
                        modules=plan.num_modules, **result)
    print(f"{method}: {plan.description} | test error {result['test_error']:.2f}% | "
          f"epoch {train_s:.0f}s", flush=True)

  batch = next(dataset.train_batches(1, 0, args.batch, drop_remainder=True))
  timing.time_interleaved(runs, batch, args.rounds, args.steps_per_round)
  bp_time = statistics.median(runs["bp"]["times"]) if "bp" in runs else None
  lines = [f"ResNet-{args.depth}, split `{args.preset}`, batch {args.batch}, one epoch "
           f"({dataset.num_train} images), fused executor, jax {jax.__version__}, "
           f"{jax.devices()[0].platform}", "",
           "| method | modules | test error (%) | step time (s) | step time / BP |",
           "|---|---|---|---|---|"]
  for method, run in runs.items():
    t = statistics.median(run["times"])
    ratio = f"{t / bp_time:.2f}" if bp_time else "-"
    lines.append(f"| {method} | {run['modules']} | {run['test_error']:.2f} | {t:.3f} | {ratio} |")
  timing.emit_table(lines, args.out)


if __name__ == "__main__":
  main()
