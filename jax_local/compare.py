"""One table over finished or running runs, and their test-accuracy curves.

  python -m jax_local.compare RUN_DIR [RUN_DIR ...] [--format=text|markdown|csv]
      [--plot=compare.png]

Reads only what a run writes (`jax_local/train.py`): config.json (method, plugin, network, split,
epochs planned, batch), history.json (one test evaluation per epoch), metrics.jsonl (images/s
per log step), summary.json (present once the run has finished) and hparams.json (module count).
Nothing is restored or run, so a run that is still training (or was interrupted) is read as far
as it got.

Columns: run (directory name), method (+plugin), net, split (preset, modules), status (finished
when summary.json exists), epochs (evaluated / planned), best and final test error (%, over the
evaluations so far), step time (s: median over the log steps of global batch / images per
second; the median discounts the log steps that include compilation or evaluation) and peak
memory (MiB): the largest `*peak*bytes*` / `*peak*mib*` scalar of the run's metrics.jsonl or
summary.json, which the trainer logs at every log step (`memory.peak_memory_record`: the device
peak on a GPU, the process's resident-set high-water mark on a CPU), else n/a. The PNG plots
test accuracy (%) per epoch for every run; its CSV sits next to it.
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import statistics
import sys

from jax_local import plots
from jax_local.analysis.run_records import (RunError, method_label, read_config, read_json,
                                            read_metrics)

MIB = 2.0 ** 20
COLUMNS = (("run", "run"), ("method", "method"), ("net", "net"), ("split", "split"),
           ("status", "status"), ("epochs", "epochs"), ("best_test_error", "best err %"),
           ("final_test_error", "final err %"), ("step_time_s", "step s"),
           ("peak_memory_mib", "peak MiB"))


def _peak_memory_mib(records) -> float | None:
  best = None
  for rec in records:
    for k, v in rec.items():
      key = k.lower()
      if "peak" not in key or not isinstance(v, (int, float)):
        continue
      if "bytes" in key:
        mib = v / MIB
      elif "mib" in key:
        mib = float(v)
      else:
        continue
      best = mib if best is None else max(best, mib)
  return best


def read_run(workdir: str) -> dict:
  """The table row of one run directory, plus its accuracy curve under "curve"."""
  workdir = os.path.abspath(workdir)
  config = read_config(workdir)   # RunError names a missing config.json
  history = read_json(os.path.join(workdir, "history.json"), []) or []
  summary = read_json(os.path.join(workdir, "summary.json"))
  hparams = read_json(os.path.join(workdir, "hparams.json"), {}) or {}
  metrics = read_metrics(workdir)
  errors = [h["test_error"] for h in history]
  modules = (summary or {}).get("num_modules", hparams.get("num_modules"))
  batch = config.data.batch_size
  step_times = [batch / m["images_per_sec"] for m in metrics if m.get("images_per_sec", 0) > 0]
  train_steps = [m["step"] for m in metrics if "loss" in m]
  return {
      "run": os.path.basename(workdir.rstrip("/")), "workdir": workdir,
      "method": method_label(config), "dataset": config.data.name,
      "net": f"{config.model.arch}{config.model.depth}",
      "split": f"{config.split.preset}, {'?' if modules is None else modules} module"
               + ("" if modules == 1 else "s"),
      "status": "finished" if summary is not None else "unfinished",
      "epochs_done": history[-1]["epoch"] if history else 0,
      "epochs_planned": config.num_epochs,
      "epochs": f"{history[-1]['epoch'] if history else 0}/{config.num_epochs}",
      "last_step": max(train_steps) if train_steps else 0,
      "best_test_error": min(errors) if errors else None,
      "final_test_error": errors[-1] if errors else None,
      "step_time_s": statistics.median(step_times) if step_times else None,
      "peak_memory_mib": _peak_memory_mib(metrics + ([summary] if summary else [])),
      "curve": [(h["epoch"], 100.0 * h["test_accuracy"]) for h in history],
  }


def _cell(v, key) -> str:
  if v is None:
    return "n/a"
  if isinstance(v, float):
    return f"{v:.3f}" if key == "step_time_s" else f"{v:.1f}" if key == "peak_memory_mib" \
        else f"{v:.2f}"
  return str(v)


def format_table(rows, fmt: str = "text") -> str:
  keys = [k for k, _ in COLUMNS]
  heads = [h for _, h in COLUMNS]
  cells = [[_cell(r[k], k) for k in keys] for r in rows]
  if fmt == "csv":
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(keys)
    w.writerows([["" if r[k] is None else r[k] for k in keys] for r in rows])
    return out.getvalue().rstrip("\n")
  if fmt == "markdown":
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
  if fmt != "text":
    raise ValueError(f"format={fmt!r}: valid are text, markdown, csv")
  widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
  lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths))]
  return "\n".join(lines + ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells])


def plot_curves(rows, png_path: str):
  series = [plots.Series(f"{r['method']} ({r['run']})", [e for e, _ in r["curve"]],
                         [a for _, a in r["curve"]]) for r in rows]
  datasets = sorted({r["dataset"] for r in rows})
  return plots.line_plot(png_path, series, "epoch", "test accuracy (%)",
                         f"Test accuracy per epoch ({', '.join(datasets)})", integer_x=True)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m jax_local.compare", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
  ap.add_argument("--format", choices=("text", "markdown", "csv"), default="text")
  ap.add_argument("--plot", default="compare.png",
                  help="PNG of the test-accuracy curves (CSV next to it); empty: no plot")
  args = ap.parse_args(argv)
  try:
    rows = [read_run(d) for d in args.run_dirs]
  except RunError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(format_table(rows, args.format))
  if args.plot:
    png, csv_file = plot_curves(rows, args.plot)
    print(f"wrote {png} and {csv_file}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
