"""Do the plug-ins close the local bases' gap to BP? Seeds with error bars at CPU scale (issue 15).

  python benchmarks/fashion_mnist_seeds.py --root=/work/runs/fm_seeds --seeds=3 --epochs=6 \
      --record=benchmarks/results/fm_seeds --out=/tmp/fm_seeds.md \
      --plot=benchmarks/figures/fm_seeds.png

Trains every row (BP, DGL and InfoPro, each alone and with HPFF, MLAAN, MAN) under every seed
with `launch.py --config=configs/fashion_mnist_grid.py:<base>,<plugin>` (the plug-in table's
network and data, per-step cosine LR, BN statistics re-estimated at each evaluation) in
`<root>/<base>_<plugin>/seed<s>`, seed by seed over all rows, so that an interrupted sweep holds
complete seeds. Finished runs are skipped and interrupted ones resume (`jax_local.seeds`), so the
same command continues a sweep. Then it prints, for both kinds of BN statistics, the final test
error as mean ± std over the seeds present and the share of its base's gap to BP that each
plug-in closes:

    share = (e_base - e_plugin) / (e_base - e_bp),

with a standard error from first-order propagation of the seed means' standard errors
(se = std / sqrt(n), rows independent). A gap smaller than twice its own standard error is
reported as such: its share is then not defined by the data.
"""
import argparse
import math
import os
import shutil
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jax_local import compare, seeds  # noqa: E402

ROWS = (("bp", "none"), ("dgl", "none"), ("dgl", "hpff"), ("dgl", "mlaan"), ("dgl", "man"),
        ("infopro", "none"), ("infopro", "hpff"), ("infopro", "mlaan"), ("infopro", "man"))
CONFIG = os.path.join(seeds.ROOT, "configs", "fashion_mnist_grid.py")


def row_root(root: str, base: str, plugin: str) -> str:
  return os.path.join(root, f"{base}_{plugin}")


RECORD_FILES = ("config.json", "hparams.json", "history.json", "summary.json")


def copy_finished(src_root: str, dst_root: str):
  """Copies the record files of every finished run under src_root that dst_root lacks.

  A finished run is one with summary.json; checkpoints are not copied. Copying the records
  into the repository (--record) and back into a fresh --root lets a later session continue
  the sweep without retraining what finished.
  """
  for row in ROWS:
    src_row = row_root(src_root, *row)
    for name in sorted(os.listdir(src_row)) if os.path.isdir(src_row) else []:
      src, dst = os.path.join(src_row, name), os.path.join(row_root(dst_root, *row), name)
      if seeds.is_finished(src) and not seeds.is_finished(dst):
        os.makedirs(dst, exist_ok=True)
        for f in RECORD_FILES:
          if os.path.exists(os.path.join(src, f)):
            shutil.copy2(os.path.join(src, f), os.path.join(dst, f))


def train(root: str, seed_values, epochs: int, record: str = "") -> bool:
  """Seed-major sweep; returns False when interrupted. Finished runs are copied to record."""
  for s in seed_values:
    for base, plugin in ROWS:
      statuses = seeds.run_seeds(f"{CONFIG}:{base},{plugin}", row_root(root, base, plugin), [s],
                                 [f"--config.num_epochs={epochs}"])
      if record:
        copy_finished(root, record)
      if statuses.get(s) == seeds.EXIT_INTERRUPTED:
        return False
  return True


def mean_se(values):
  """(mean, standard error of the mean, n)."""
  n = len(values)
  return statistics.fmean(values), (statistics.stdev(values) / math.sqrt(n) if n > 1 else
                                    float("nan")), n


def gap_share(base, plugin, bp):
  """(share, its standard error, gap, the gap's standard error); (mean, se, n) arguments."""
  (b, sb, _), (p, sp, _), (g, sg, _) = base, plugin, bp
  gap = b - g
  share = (b - p) / gap
  d_b, d_p, d_g = (p - g) / gap ** 2, -1 / gap, (b - p) / gap ** 2
  se = math.sqrt((d_b * sb) ** 2 + (d_p * sp) ** 2 + (d_g * sg) ** 2)
  return share, se, gap, math.sqrt(sb ** 2 + sg ** 2)


def finished_errors(root, base, plugin, key):
  """Final test errors (key: "test_error" or "test_error_bn_reestimated") of finished seeds."""
  out = {}
  path = row_root(root, base, plugin)
  for name in sorted(os.listdir(path)) if os.path.isdir(path) else []:
    summary = compare.read_json(os.path.join(path, name, "summary.json"))
    if summary is not None and summary.get(f"final_{key}") is not None:
      out[name] = summary[f"final_{key}"]
  return out


def table(root: str) -> list[str]:
  lines = []
  for key, title in (("test_error_bn_reestimated", "re-estimated BN statistics"),
                     ("test_error", "running BN statistics")):
    errors = {row: list(finished_errors(root, *row, key).values()) for row in ROWS}
    stats = {row: mean_se(v) for row, v in errors.items() if v}
    lines += [f"Final test error (%), {title}: mean ± std over n seeds; share of the base's gap "
              "to BP closed by the plug-in, ± standard error", "",
              "| base | plugin | n | test error (%) | min-max | gap share |", "|---|---|---|---|---|---|"]
    for base, plugin in ROWS:
      v = errors[(base, plugin)]
      if not v:
        lines.append(f"| {base} | {plugin} | 0 | - | - | - |")
        continue
      share = "-"
      if plugin != "none" and (base, "none") in stats and ("bp", "none") in stats:
        s, se, gap, gap_se = gap_share(stats[(base, "none")], stats[(base, plugin)],
                                       stats[("bp", "none")])
        share = (f"{100 * s:.0f} % (a row has one seed: no error bar)" if math.isnan(se) else
                 f"{100 * s:.0f} ± {100 * se:.0f} %" if abs(gap) >= 2 * gap_se else
                 f"gap {gap:.2f} ± {gap_se:.2f} within noise")
      error, spread = ((f"{statistics.fmean(v):.2f} ± {statistics.stdev(v):.2f}",
                        f"{min(v):.2f}-{max(v):.2f}") if len(v) > 1 else (f"{v[0]:.2f}", "-"))
      lines.append(f"| {base} | {plugin} | {len(v)} | {error} | {spread} | {share} |")
    lines.append("")
  return lines


def main():
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--root", default="/work/runs/fm_seeds")
  ap.add_argument("--seeds", default="3", help="a count or a comma list (jax_local.seeds)")
  ap.add_argument("--epochs", type=int, default=6)
  ap.add_argument("--out", default="", help="also write the tables to this markdown file")
  ap.add_argument("--plot", default="", help="test-accuracy curves (re-estimated BN statistics), "
                  "mean ± std per row")
  ap.add_argument("--report_only", action="store_true", help="no training, tables of what exists")
  ap.add_argument("--record", default="", help="a folder (e.g. in the repository) that keeps the "
                  "record files of finished runs; they are copied into --root before training, "
                  "so a fresh machine continues the sweep")
  args = ap.parse_args()
  if args.record:
    copy_finished(args.record, args.root)
  if not args.report_only and not train(args.root, seeds.seed_list(args.seeds), args.epochs,
                                        args.record):
    print("interrupted: rerun the same command to continue", file=sys.stderr)
  lines = table(args.root)
  print("\n".join(lines))
  if args.out:
    with open(args.out, "w") as f:
      f.write("\n".join(lines) + "\n")
  if args.plot:
    dirs = [os.path.join(row_root(args.root, *row), d) for row in ROWS
            if os.path.isdir(row_root(args.root, *row))
            for d in sorted(os.listdir(row_root(args.root, *row)))]
    rows = compare.group_seeds([compare.read_run(d) for d in dirs])
    print("wrote", *compare.plot_curves(rows, args.plot, reestimated=True), file=sys.stderr)


if __name__ == "__main__":
  main()
