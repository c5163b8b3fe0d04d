"""One table over finished or running runs, and their test-accuracy curves.

  python -m jax_local.compare RUN_DIR [RUN_DIR ...] [--format=text|markdown|csv]
      [--plot=FIGURE.pdf|.svg|.png] [--dpi=300]

Reads only what a run writes (`jax_local/train.py`): config.json (method, plugin, network, split,
epochs planned, batch), history.json (one test evaluation per epoch), metrics.jsonl (images/s
per log step), summary.json (present once the run has finished) and hparams.json (module count,
mock data).
Nothing is restored or run, so a run that is still training (or was interrupted) is read as far
as it got.

Columns: run (directory name), method (+plugin), dataset ("(MOCK data)" for a `--mock_data`
run, whose numbers mean nothing: its summary.json or hparams.json says so), net, split (preset,
modules), status (finished
when summary.json exists), epochs (evaluated / planned), best and final test error (%, over the
evaluations so far; with the running BN statistics, and, for runs with
`eval.bn_recompute_batches` > 0, also with re-estimated ones: README "Two test errors"), for runs
with a validation split the test error at the evaluation of lowest validation error (the first
of equals, as the trainer's best checkpoint), the
paper's error beside them for a run that reproduces a published row (same dataset, network,
split, method and plug-in as a row of third_party/published_rows.csv: `jax_local.published`;
top-1 [± std] [/ top-5], shown when some run matches), step time (s: median over the log steps of global batch / images per
second; the median discounts the log steps that include compilation or evaluation) and peak
memory (MiB): the largest `*peak*bytes*` / `*peak*mib*` scalar of the run's metrics.jsonl or
summary.json, which the trainer logs at every log step (`memory.peak_memory_record`: the device
peak on a GPU, the process's resident-set high-water mark on a CPU), else n/a. `--plot` names a
figure of the test accuracy (%) per epoch of every run (one paper column wide, format from the
extension), with its CSV next to it; without it no figure is written (never one in the current
directory unasked).

Seeds: runs whose config.json files differ in `seed` only form one row (`--no-group_seeds`
keeps them apart). Its run cell is "<first run> (n seeds)", its errors are "mean ± std
(min–max)" over the seeds (std with n−1 in the denominator), its status counts finished
runs, and its curve is the mean test accuracy per epoch with ± std error bars, over the epochs
every seed has reached.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import statistics
import sys

from jax_local import metric_names, plots, published
from jax_local.run_log import REESTIMATED
from jax_local.analysis.run_records import (RunError, method_label, read_config, read_json,
                                            read_metrics)

MIB = 2.0 ** 20
COLUMNS = (("run", "run"), ("method", "method"), ("dataset", "dataset"), ("net", "net"),
           ("split", "split"),
           ("status", "status"), ("epochs", "epochs"), ("best_test_error", "best err %"),
           ("final_test_error", "final err %"),
           ("test_error_at_best_validation", "err % at best val."),
           ("paper_error", "paper err %"),
           ("best_test_error_bn", "best err % (re-est. BN)"),
           ("final_test_error_bn", "final err % (re-est. BN)"),
           ("step_time_s", "step s"), ("peak_memory_mib", "peak MiB"))
OPTIONAL = ("best_test_error_bn", "final_test_error_bn", "paper_error",  # shown when a row has one
            "test_error_at_best_validation")
ERRORS = ("best_test_error", "final_test_error", "best_test_error_bn", "final_test_error_bn",
          "test_error_at_best_validation")


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
  errors_bn = [h[f"test_error{REESTIMATED}"] for h in history if f"test_error{REESTIMATED}" in h]
  validated = [h for h in history if "validation_error" in h]
  modules = (summary or {}).get("num_modules", hparams.get("num_modules"))
  mock = bool((summary or {}).get("mock") or hparams.get("mock_data"))
  batch = config.data.batch_size
  step_times = [batch / m["images_per_sec"] for m in metrics if (m.get("images_per_sec") or 0) > 0]
  train_steps = [m["step"] for m in metrics if any(k in m for k in metric_names.TRAIN_ROW_KEYS)]
  row = published.match(config.data.name, config.model.arch, config.model.depth,
                        config.split.preset, config.method.name,
                        config.method.get("plugin", "none"))
  return {
      "run": os.path.basename(workdir.rstrip("/")), "workdir": workdir,
      "method": method_label(config), "mock": mock,
      "dataset": config.data.name + (" (MOCK data)" if mock else ""),
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
      "best_test_error_bn": min(errors_bn) if errors_bn else None,
      "final_test_error_bn": errors_bn[-1] if errors_bn else None,
      "test_error_at_best_validation": min(
          validated, key=lambda h: h["validation_error"])["test_error"] if validated else None,
      "paper_error": None if row is None else published.format_error(row),
      "published_row": None if row is None else row.name,
      "seed": config.get("seed"),
      "seed_group": json.dumps({**{k: v for k, v in config.to_dict().items() if k != "seed"},
                                "mock": mock}, sort_keys=True, default=str),
      "step_time_s": statistics.median(step_times) if step_times else None,
      "peak_memory_mib": _peak_memory_mib(metrics + ([summary] if summary else [])),
      "curve": [(h["epoch"], 100.0 * h["test_accuracy"]) for h in history],
      "curve_bn": [(h["epoch"], 100.0 * h[f"test_accuracy{REESTIMATED}"]) for h in history
                   if f"test_accuracy{REESTIMATED}" in h],
  }


def _spread(values) -> dict | None:
  """{"mean", "std", "min", "max", "n"} of the non-None values (std with n−1; 0 for one)."""
  values = [v for v in values if v is not None]
  if not values:
    return None
  std = statistics.stdev(values) if len(values) > 1 else 0.0
  return {"mean": statistics.fmean(values), "std": std, "min": min(values), "max": max(values),
          "n": len(values)}


def _group_name(members, levels: int = 1) -> str:
  """The folder holding the seeds when every member is named `seed<s>` (the layout of
  `jax_local.seeds`: `<root>/seed<s>`), else the first member's name; with `levels` > 1 that
  many path components ending there (`results/bp_none`), to tell apart groups whose folders
  share a name."""
  path = members[0]["workdir"].rstrip("/")
  if all(re.fullmatch(r"seed\d+", m["run"]) for m in members):
    path = os.path.dirname(path)
  return "/".join(path.split(os.sep)[-levels:])


def group_seeds(rows) -> list[dict]:
  """Rows whose configs differ in `seed` only merged into one row each, in first-seen order.

  A merged row is named "<group> (<n> seeds)", its "group" being the seeds' folder under the
  layout of `jax_local.seeds`, else the first member's name (with its parent folder when two
  groups would share that name). It holds `_spread` dicts in its
  error cells, the median step time, the largest peak memory, "k/n finished" as status, the
  seeds under "seeds" and "members", and as "curve" the mean accuracy per epoch over the epochs
  all seeds reached, with the std under "curve_std".
  """
  groups: dict[str, list[dict]] = {}
  for r in rows:
    groups.setdefault(r["seed_group"], []).append(r)
  out = []
  for members in groups.values():
    if len(members) == 1:
      out.append(members[0])
      continue
    first = members[0]
    row = dict(first)
    row["group"] = _group_name(members)
    row["run"] = f"{row['group']} ({len(members)} seeds)"
    row["seeds"] = [m["seed"] for m in members]
    row["members"] = members
    finished = sum(m["status"] == "finished" for m in members)
    row["status"] = f"{finished}/{len(members)} finished"
    done = [m["epochs_done"] for m in members]
    row["epochs"] = f"{min(done)}-{max(done)}/{first['epochs_planned']}" \
        if min(done) != max(done) else f"{done[0]}/{first['epochs_planned']}"
    for key in ERRORS:
      row[key] = _spread([m[key] for m in members])
    times = [m["step_time_s"] for m in members if m["step_time_s"] is not None]
    row["step_time_s"] = statistics.median(times) if times else None
    peaks = [m["peak_memory_mib"] for m in members if m["peak_memory_mib"] is not None]
    row["peak_memory_mib"] = max(peaks) if peaks else None
    for curve in ("curve", "curve_bn"):
      common = sorted(set.intersection(*[{e for e, _ in m[curve]} for m in members]))
      per_epoch = [[dict(m[curve])[e] for m in members] for e in common]
      row[curve] = [(e, statistics.fmean(v)) for e, v in zip(common, per_epoch)]
      row[f"{curve}_std"] = [statistics.stdev(v) for v in per_epoch]
    out.append(row)
  names = [r["group"] for r in out if "group" in r]
  for r in out:
    if "group" in r and names.count(r["group"]) > 1:
      r["group"] = _group_name(r["members"], levels=2)
      r["run"] = f"{r['group']} ({len(r['members'])} seeds)"
  return out


def _cell(v, key) -> str:
  if v is None:
    return "n/a"
  if isinstance(v, dict):  # a seed group's spread
    return f"{v['mean']:.2f} ± {v['std']:.2f} ({v['min']:.2f}–{v['max']:.2f})"
  if isinstance(v, float):
    return f"{v:.3f}" if key == "step_time_s" else f"{v:.1f}" if key == "peak_memory_mib" \
        else f"{v:.2f}"
  return str(v)


def _csv_cells(r, key) -> list:
  v = r[key]
  if key not in ERRORS:
    return ["" if v is None else v]
  if not isinstance(v, dict):
    return ["" if v is None else v, "", "", "", 1 if v is not None else 0]
  return [v["mean"], v["std"], v["min"], v["max"], v["n"]]


def format_table(rows, fmt: str = "text") -> str:
  """The table in `fmt` (text | markdown | csv); CSV error columns come as mean, std, min,
  max and n (a single run: its value and n = 1)."""
  shown = [(k, h) for k, h in COLUMNS
           if k not in OPTIONAL or any(r.get(k) is not None for r in rows)]
  keys = [k for k, _ in shown]
  heads = [h for _, h in shown]
  cells = [[_cell(r[k], k) for k in keys] for r in rows]
  if fmt == "csv":
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(sum(([k] if k not in ERRORS else
                    [k, f"{k}_std", f"{k}_min", f"{k}_max", f"{k}_n"] for k in keys), []))
    w.writerows([sum((_csv_cells(r, k) for k in keys), []) for r in rows])
    return out.getvalue().rstrip("\n")
  if fmt == "markdown":
    lines = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
  if fmt != "text":
    raise ValueError(f"format={fmt!r}: valid are text, markdown, csv")
  widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
  lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths))]
  return "\n".join(lines + ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells])


def plot_curves(rows, png_path: str, reestimated: bool = False, dpi: int = plots.DPI):
  """Test accuracy per epoch (with running BN statistics, or the re-estimated ones); a seed
  group is its mean with ± std error bars."""
  key = "curve_bn" if reestimated else "curve"
  label = lambda r: (f"{r['method']} ({r['group']}, {len(r['seeds'])} seeds)" if "group" in r
                     else f"{r['method']} ({r['run']})")
  series = [plots.Series(label(r), [e for e, _ in r[key]],
                         [a for _, a in r[key]], y_std=r.get(f"{key}_std")) for r in rows]
  datasets = sorted({r["dataset"] for r in rows})
  stats = "re-estimated" if reestimated else "running"
  return plots.line_plot(png_path, series, "epoch", "test accuracy (%)",
                         f"Test accuracy, {stats} BN stats ({', '.join(datasets)})",
                         integer_x=True, dpi=dpi)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m jax_local.compare", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
  ap.add_argument("--format", choices=("text", "markdown", "csv"), default="text")
  ap.add_argument("--plot", default="",
                  help="figure of the test-accuracy curves, format from the extension (.png, "
                       ".pdf, .svg; CSV next to it); default: no figure")
  ap.add_argument("--dpi", type=int, default=plots.DPI, help="resolution of a .png figure")
  ap.add_argument("--plot_bn", choices=("running", "reestimated"), default="running",
                  help="which test accuracy the plot draws")
  ap.add_argument("--group_seeds", action=argparse.BooleanOptionalAction, default=True,
                  help="one row (mean ± std) per set of runs that differ in seed only")
  args = ap.parse_args(argv)
  if args.plot:
    try:
      plots.figure_format(args.plot)
    except ValueError as e:
      ap.error(str(e))  # one line, exit status 2
  try:
    rows = [read_run(d) for d in args.run_dirs]
  except RunError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if args.group_seeds:
    rows = group_seeds(rows)
  print(format_table(rows, args.format))
  if args.plot:
    png, csv_file = plot_curves(rows, args.plot, args.plot_bn == "reestimated", args.dpi)
    print(f"wrote {png} and {csv_file}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  sys.exit(main())
