"""Analyse trained runs: linear probes and CKA per local module, with plots.

  python -m jax_local.analyze probe --workdir=RUN_DIR [--workdir=RUN_DIR2 ...] [--out=probe.pdf]
      [--train_examples=10000] [--test_examples=0] [--l2=1e-4] [--steps=200] [--dpi=300]
  python -m jax_local.analyze cka --workdir=RUN_A [--workdir=RUN_C ...] --reference=RUN_B
      [--out=cka.pdf] [--examples=1000] [--features=flat|pooled] [--dpi=300]

probe: freezes each run (newest checkpoint, eval-mode BatchNorm), computes every module's
globally average-pooled output once on the first `train_examples` images of the run's training
set (no augmentation) and on the test split, fits a softmax-regression probe per module
(`jax_local/analysis/probe.py`) and reports its test accuracy. All runs go in one plot.

cka: linear CKA (`jax_local/analysis/cka.py`) between each run's module outputs and the
reference run's outputs at the same blocks, on the first `examples` test images. `flat` compares
the whole feature maps (flattened), `pooled` their spatial averages.

Which modules (BP runs are cut at their config's split) and which features (the last module's is
the classifier's input): `jax_local/analysis/run_loading.py`. Each plot is a figure one paper
column wide, its format from the extension of `--out` (.pdf, .svg, .png), with a CSV of its
numbers next to it (`jax_local/plots.py`); without `--out` it goes to `analysis/probe.pdf` or
`analysis/cka.pdf` inside the first run's workdir (never the current directory). The tables are
printed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from jax_local import plots  # noqa: E402
from jax_local.analysis import cka as cka_lib  # noqa: E402
from jax_local.analysis import probe as probe_lib  # noqa: E402
from jax_local.analysis import run_loading  # noqa: E402


def _x_axis(runs):
  """Module positions 1..K and tick labels: block names if all runs share the cuts."""
  k = max(r.num_modules for r in runs)
  same = all(r.feature_blocks == runs[0].feature_blocks for r in runs)
  names = [f"{i + 1}\n{b}" for i, b in enumerate(runs[0].feature_blocks)] if same else \
      [str(i + 1) for i in range(k)]
  return list(range(1, k + 1)), names


def probe_runs(runs, train_examples: int = 10000, test_examples: int = 0, l2: float = probe_lib.L2,
               steps: int = probe_lib.STEPS, log=print) -> list[dict]:
  """One row per (run, module): run, module, block, dim, probe train/test accuracy; plus the
  network's own test accuracy on the same images (`network_test_accuracy`)."""
  rows = []
  for run in runs:
    t0 = time.time()
    x, y = run_loading.train_images(run, train_examples)
    xt, yt = run_loading.test_images(run, test_examples)
    feats, _ = run_loading.module_features(run, x)
    feats_t, logits_t = run_loading.module_features(run, xt)
    own = float(np.mean(np.argmax(logits_t, -1) == yt))
    width = max(f.shape[1] for f in feats)
    for i, (f, ft) in enumerate(zip(feats, feats_t)):
      res = probe_lib.fit_probe(f, y, ft, yt, run.dataset.num_classes, l2=l2, steps=steps,
                                pad_to=width)
      rows.append({"run": run.label, "workdir": run.workdir, "step": run.step,
                   "module": i + 1, "name": run.module_names[i], "block": run.feature_blocks[i],
                   "dim": res.dim, "train_examples": len(y), "test_examples": len(yt),
                   "probe_train_accuracy": res.train_accuracy,
                   "probe_test_accuracy": res.test_accuracy, "probe_loss": res.train_loss,
                   "network_test_accuracy": own})
    log(f"{run.label}: probes of {run.num_modules} modules on {len(y)} train / {len(yt)} test "
        f"images in {time.time() - t0:.0f} s")
  return rows


def cka_runs(runs, reference, examples: int = 1000, features: str = "flat",
             log=print) -> list[dict]:
  """One row per (run, module): linear CKA between the run's module output and the reference's
  output at the same block, on the first `examples` test images."""
  if features not in ("flat", "pooled"):
    raise ValueError(f"features={features!r}: valid are flat, pooled")
  pooled = features == "pooled"
  x, _ = run_loading.test_images(reference, examples)
  ref_grams = {}
  rows = []
  for run in runs:
    if run.plan.backbone.block_names != reference.plan.backbone.block_names:
      raise run_loading.RunError(
          f"{run.workdir} ({run.plan.backbone.name}) and the reference {reference.workdir} "
          f"({reference.plan.backbone.name}) have different networks; CKA per module needs the "
          "same blocks")
    t0 = time.time()
    missing = [b for b in run.feature_blocks if b not in ref_grams]
    if missing:
      ref_feats, _ = run_loading.module_features(reference, x, pooled, blocks=missing)
      ref_grams.update({b: cka_lib.centred_gram(f, np.float32) for b, f in zip(missing, ref_feats)})
    feats, _ = run_loading.module_features(run, x, pooled)
    for i, f in enumerate(feats):
      value = cka_lib.cka_from_grams(cka_lib.centred_gram(f, np.float32),
                                     ref_grams[run.feature_blocks[i]])
      rows.append({"run": run.label, "workdir": run.workdir, "reference": reference.label,
                   "module": i + 1, "name": run.module_names[i], "block": run.feature_blocks[i],
                   "features": features, "examples": len(x),
                   "feature_dim": int(np.prod(f.shape[1:])), "cka": value})
    log(f"{run.label}: CKA to {reference.label} for {run.num_modules} modules in "
        f"{time.time() - t0:.0f} s")
  return rows


def _series(rows, runs, key, scale=1.0):
  out = []
  for run in runs:
    mine = [r for r in rows if r["run"] == run.label]
    out.append(plots.Series(run.label, [r["module"] for r in mine],
                            [scale * r[key] for r in mine], [r["block"] for r in mine]))
  return out


def plot_probe(rows, runs, png_path: str, dpi: int = plots.DPI):
  xs, names = _x_axis(runs)
  n_train, n_test = rows[0]["train_examples"], rows[0]["test_examples"]
  return plots.line_plot(
      png_path, _series(rows, runs, "probe_test_accuracy", 100.0),
      "module (last block)", "linear-probe test accuracy (%)",
      f"Linear probe on pooled module outputs ({n_train} train / {n_test} test images)",
      xticks=(xs, names), dpi=dpi)


def plot_cka(rows, runs, png_path: str, dpi: int = plots.DPI):
  xs, names = _x_axis(runs)
  r0 = rows[0]
  low = max(0.0, np.floor((min(r["cka"] for r in rows) - 0.02) * 20) / 20)  # to 0.05 below
  return plots.line_plot(
      png_path, _series(rows, runs, "cka"), "module (last block)",
      f"linear CKA to {r0['reference']} [0-1]",
      f"Linear CKA per module, {r0['features']} features, {r0['examples']} test images",
      xticks=(xs, names), ylim=(low, 1.005), dpi=dpi)


def format_rows(rows, columns) -> str:
  widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in columns}
  lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
  lines += ["  ".join(_fmt(r[c]).ljust(widths[c]) for c in columns) for r in rows]
  return "\n".join(lines)


def _fmt(v) -> str:
  return f"{v:.4f}" if isinstance(v, float) else str(v)


def _workdirs(values) -> list[str]:
  return [w for v in values for w in v.split(",") if w]


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m jax_local.analyze", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = ap.add_subparsers(dest="command", required=True)
  p = sub.add_parser("probe", help="linear probe per module")
  p.add_argument("--workdir", action="append", required=True,
                 help="run directory (repeat, or comma-separate, for several runs)")
  p.add_argument("--out", default="", help="figure path (.pdf, .svg, .png; the CSV goes next "
                 "to it); default: analysis/probe.pdf in the first run's workdir")
  p.add_argument("--dpi", type=int, default=plots.DPI, help="resolution of a .png figure")
  p.add_argument("--train_examples", type=int, default=10000,
                 help="first N images of the run's training set (0: all)")
  p.add_argument("--test_examples", type=int, default=0, help="first N test images (0: all)")
  p.add_argument("--l2", type=float, default=probe_lib.L2)
  p.add_argument("--steps", type=int, default=probe_lib.STEPS, help="L-BFGS iterations")
  p.add_argument("--data_dir", default="", help="override the runs' data.tfds_data_dir")
  c = sub.add_parser("cka", help="linear CKA per module against a reference run")
  c.add_argument("--workdir", action="append", required=True,
                 help="run directory (repeat, or comma-separate, for several runs)")
  c.add_argument("--reference", required=True, help="reference run directory (e.g. BP)")
  c.add_argument("--out", default="", help="figure path (.pdf, .svg, .png; the CSV goes next "
                 "to it); default: analysis/cka.pdf in the first run's workdir")
  c.add_argument("--dpi", type=int, default=plots.DPI, help="resolution of a .png figure")
  c.add_argument("--examples", type=int, default=1000, help="first N test images")
  c.add_argument("--features", choices=("flat", "pooled"), default="flat")
  c.add_argument("--data_dir", default="", help="override the runs' data.tfds_data_dir")
  args = ap.parse_args(argv)
  out = args.out or os.path.join(_workdirs(args.workdir)[0], "analysis", f"{args.command}.pdf")
  try:
    plots.figure_format(out)
  except ValueError as e:
    ap.error(str(e))  # one line, exit status 2

  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.ERROR)  # orbax's read-only notices
  loaded = {}

  def load(workdir):
    key = os.path.realpath(workdir)
    if key not in loaded:
      loaded[key] = run_loading.load_run(workdir, args.data_dir or None)
    return loaded[key]

  try:
    runs = [load(w) for w in _workdirs(args.workdir)]
    if args.command == "probe":
      rows = probe_runs(runs, args.train_examples, args.test_examples, args.l2, args.steps)
      print(format_rows(rows, ["run", "step", "module", "block", "dim", "probe_train_accuracy",
                               "probe_test_accuracy", "network_test_accuracy"]))
      png, csv = plot_probe(rows, runs, out, args.dpi)
    else:
      reference = load(args.reference)
      rows = cka_runs(runs, reference, args.examples, args.features)
      print(format_rows(rows, ["run", "module", "block", "feature_dim", "cka"]))
      png, csv = plot_cka(rows, runs, out, args.dpi)
  except run_loading.RunError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {png} and {csv}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
