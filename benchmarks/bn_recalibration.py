"""Test accuracy with a run's BN running statistics against statistics re-estimated at its final
parameters (the DGL+HPFF reading of the Fashion-MNIST plugin table, BENCHMARKS.md).

  python benchmarks/bn_recalibration.py /work/runs/fm_grid/dgl_hpff /work/runs/fm_grid/dgl_none

Per run (restored by `jax_local.analysis.run_loading`): accuracy on the first --test images
with the checkpoint's running statistics; then the running averages are updated (momentum 0.9,
the trainer's rule) by --batches train-mode forward passes over augmented training batches of
epoch 2 at the final parameters, and the accuracy is measured again. Also prints, over all
backbone BN layers, the largest |Δmean| / σ and the range of the variance ratio between the
two sets of statistics.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jax_local.analysis import run_loading  # noqa: E402
from jax_local.engine import forward  # noqa: E402


def accuracy(run, stats, images, labels, batch: int = 500) -> float:
  logits = jax.jit(lambda p, s, x: forward.evaluate_logits(run.plan, p, s, x))
  correct = [np.argmax(np.asarray(logits(run.params, stats, images[a:a + batch])), -1)
             == labels[a:a + batch] for a in range(0, len(images), batch)]
  return float(np.mean(np.concatenate(correct)))


def reestimate(run, num_batches: int, batch_size: int):
  """Running statistics after `num_batches` train-mode forwards at the final parameters."""
  plan = run.plan

  @jax.jit
  def update(stats, images):
    h, new = images, {}
    for i in range(plan.num_modules):
      h, s = forward.apply_module(plan, i, run.params, stats, h, train=True)
      new.update(s)
    return {**stats, "backbone": {**stats["backbone"], **new}}

  stats = run.batch_stats
  for k, b in enumerate(run.dataset.train_batches(2, 0, batch_size, True)):
    if k == num_batches:
      break
    stats = update(stats, b["image"])
  return stats


def compare_stats(old, new) -> tuple[float, float, float]:
  """(max |mean_old − mean_new| / σ_new, min and max of var_old / var_new) over BN layers."""
  shifts, ratios = [], []
  for path, m_old in jax.tree_util.tree_leaves_with_path(old):
    if jax.tree_util.keystr(path).endswith("['mean']"):
      node_old, node_new = old, new
      for key in path[:-1]:
        node_old, node_new = node_old[key.key], node_new[key.key]
      var = np.asarray(node_new["var"]) + 1e-5
      shifts.append(np.abs(np.asarray(m_old) - np.asarray(node_new["mean"])) / np.sqrt(var))
      ratios.append(np.asarray(node_old["var"]) / var)
  shifts, ratios = np.concatenate(shifts), np.concatenate(ratios)
  return float(shifts.max()), float(ratios.min()), float(ratios.max())


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("workdirs", nargs="+")
  ap.add_argument("--batches", type=int, default=40)
  ap.add_argument("--batch_size", type=int, default=128)
  ap.add_argument("--test", type=int, default=2000, help="first N test images")
  args = ap.parse_args()
  print("| run | test acc., running stats | test acc., re-estimated | max abs(Δmean)/σ | "
        "var ratio min-max |\n|---|---|---|---|---|")
  for workdir in args.workdirs:
    run = run_loading.load_run(workdir)
    images, labels = run_loading.test_images(run, args.test)
    stats = reestimate(run, args.batches, args.batch_size)
    shift, lo, hi = compare_stats(run.batch_stats["backbone"], stats["backbone"])
    print(f"| {run.label} | {accuracy(run, run.batch_stats, images, labels):.4f} | "
          f"{accuracy(run, stats, images, labels):.4f} | {shift:.2f} | {lo:.2f}-{hi:.2f} |",
          flush=True)


if __name__ == "__main__":
  main()
