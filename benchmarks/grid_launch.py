"""Every config of the published plugin grid trains from launch.py (issue 3, "done when").

  python benchmarks/grid_launch.py --root=/work/runs/grid_launch --out=/tmp/grid_launch.md

Runs `launch.py --config=configs/cifar.py:<name> --mock_data=32` for each config of the grid
(CIFAR-10, SVHN, STL-10 × ResNet-32 "K=16" / ResNet-110 "K=55" × {DGL, InfoPro, PredSim} × {HPFF,
MLAAN, MAN on CIFAR-10}, and AugLocal; names as configs/cifar.py), each in its own process: the
config's real network, split, plugin, executor and recipe, on 32 random images per split of the
config's dataset shape (tfds.testing.mock_data), batch 16, one epoch = 2 steps, then evaluation
and a checkpoint. The numbers say that the config runs end to end with finite losses, nothing
about accuracy (Fashion-MNIST versions of the grid train on real data:
benchmarks/fashion_mnist_plugins.py).

Processes share a persistent XLA compilation cache in <root>/xla_cache, so a program compiled
for one dataset's config is reused by another's with the same shapes. A config whose workdir
holds summary.json is not run again. The table (appended to --out row by row) gives the
module count, the exit status, the wall time of the process and the training loss of the two
steps.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from jax_local.metric_names import WEIGHTED_TOTAL  # noqa: E402
DATASETS = ("cifar10", "svhn", "stl10")
OVERRIDES = ("--config.data.batch_size=16", "--config.data.eval_batch_size=16",
             "--config.num_epochs=1", "--config.log_every_steps=1")


def grid_configs(datasets=DATASETS) -> list:
  """Names of the grid's plugin and AugLocal cells (configs/cifar.py names)."""
  names = []
  for d in datasets:
    for net in ("r110_k55", "r32_k16"):
      if d == "cifar10":
        names.append(f"{d}_{net}_auglocal")
      for base in ("dgl", "infopro", "predsim"):
        for plugin in ("hpff", "mlaan") + (("man",) if d == "cifar10" else ()):
          names.append(f"{d}_{net}_{base}_{plugin}")
  return sorted(names)


def run_config(name: str, root: str) -> dict:
  """Trains one config through launch.py on mock data; returns what the row reports."""
  workdir = os.path.join(root, name)
  summary_path = os.path.join(workdir, "summary.json")
  row = {"config": name, "status": 0, "wall_s": None}
  if not os.path.exists(summary_path):
    cmd = [sys.executable, os.path.join(ROOT, "launch.py"), f"--config=configs/cifar.py:{name}",
           f"--workdir={workdir}", "--mock_data=32", *OVERRIDES]
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": os.path.join(root, "xla_cache")}
    t0 = time.time()
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(root, f"{name}.log"), "w") as log:
      row["status"] = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log,
                                     stderr=subprocess.STDOUT).returncode
    row["wall_s"] = time.time() - t0
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      row["modules"] = json.load(f)["num_modules"]
  losses = []
  metrics = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(metrics):
    with open(metrics) as f:
      losses = [r[WEIGHTED_TOTAL] for r in map(json.loads, f) if WEIGHTED_TOTAL in r]
  row["losses"] = losses
  row["ok"] = (row["status"] == 0 and os.path.exists(summary_path) and len(losses) == 2
               and all(math.isfinite(x) for x in losses))
  return row


def format_row(row: dict) -> str:
  wall = "done before" if row["wall_s"] is None else f"{row['wall_s']:.0f}"
  losses = " → ".join(f"{x:.3f}" for x in row["losses"]) or "-"
  return (f"| {row['config']} | {row.get('modules', '-')} | {row['status']} | {wall} | {losses} "
          f"| {'yes' if row['ok'] else '**no**'} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--root", required=True, help="directory for the workdirs, logs, cache")
  parser.add_argument("--out", required=True, help="markdown table, appended row by row")
  parser.add_argument("--datasets", default=",".join(DATASETS))
  args = parser.parse_args()
  names = grid_configs(args.datasets.split(","))
  os.makedirs(args.root, exist_ok=True)
  with open(args.out, "a") as out:
    out.write("| config | modules | exit | wall s | loss, steps 1 → 2 | trains |\n"
              "|---|---|---|---|---|---|\n")
  failed = []
  for i, name in enumerate(names):
    row = run_config(name, args.root)
    line = format_row(row)
    print(f"[{i + 1}/{len(names)}] {line}", flush=True)
    with open(args.out, "a") as out:
      out.write(line + "\n")
    if not row["ok"]:
      failed.append(name)
  print(f"{len(names) - len(failed)}/{len(names)} configs train; failed: {failed or 'none'}")
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main()
