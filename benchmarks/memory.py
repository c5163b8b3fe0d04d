"""Memory ratios to BP at paper sizes, compile-only (jax_local.memory), as a markdown table.

  python benchmarks/memory.py --out=/tmp/memory.md [--batch=1024] [--configs=a,b,...]
      [--chart=/tmp/memory.png]

One row per config of --configs (default: benchmarks/grid.py): the fused and the sequential
executor of its plan, with BP and BP+remat (per block `jax.checkpoint`) of the same backbone,
all at the same batch. Numbers are argument + output - alias + temp of whole training steps (see
jax_local/memory.py); nothing is executed, so this runs on a CPU. A row is appended to --out
as soon as it is measured.
"""
import json
import sys

from absl import app, flags
import jax

sys.path.insert(0, ".")
from benchmarks import grid  # noqa: E402
from benchmarks.grid import CIFAR10_GRID  # noqa: E402
from jax_local import memory  # noqa: E402

flags.DEFINE_string("out", "/tmp/memory.md", "Markdown table (appended row by row).")
flags.DEFINE_integer("batch", 1024, "Global batch size.")
flags.DEFINE_list("configs", list(CIFAR10_GRID),
                  "Published row names or configs/cifar.py cell names (benchmarks/grid.py).")
flags.DEFINE_list("variants", ["fused", "sequential"], "Executors of the config's plan.")
flags.DEFINE_string("chart", "", "Also write a bar chart of the table (PNG, + CSV), per row.")
FLAGS = flags.FLAGS
MIB = memory.MIB


def main(_):
  bp_rows, chart = {}, {}
  with open(FLAGS.out, "a") as f:
    f.write(f"\nbatch {FLAGS.batch}, {jax.devices()[0].platform}, compile-only; MiB (ratio to BP)"
            "\n\n| config | modules | bp | bp_remat | fused | sequential | seq. programs | "
            "seq. compile s | fused compile s |\n|---|---|---|---|---|---|---|---|---|\n")
  for name in FLAGS.configs:
    config = grid.get_config(name)
    config.data.batch_size = config.data.eval_batch_size = FLAGS.batch
    s = memory.setup(config)
    key = (config.data.name, config.model.depth, FLAGS.batch)
    if key not in bp_rows:
      bp_rows[key] = {r.name: r for r in memory.memory_report(config, ("bp", "bp_remat"))}
    rows = dict(bp_rows[key])
    rows.update({r.name: r for r in memory.memory_report(config, FLAGS.variants)})
    bp = rows["bp"].bytes
    cell = lambda v: (f"{rows[v].bytes / MIB:.0f} ({rows[v].bytes / bp:.3f})" if v in rows
                      else "-")
    comp = lambda v: f"{rows[v].compile_s:.0f}" if v in rows else "-"
    line = (f"| {name} | {s.plan.num_modules} | {bp / MIB:.0f} | {cell('bp_remat')} | "
            f"{cell('fused')} | {cell('sequential')} | "
            f"{rows['sequential'].programs if 'sequential' in rows else '-'} | "
            f"{comp('sequential')} | {comp('fused')} |\n")
    with open(FLAGS.out, "a") as f:
      f.write(line)
    print(line, end="")
    if FLAGS.chart:
      from jax_local import plots
      chart[name] = {v: r.bytes for v, r in rows.items()}
      plots.memory_chart(FLAGS.chart, chart, f"batch {FLAGS.batch}, compile-only, "
                         f"{jax.devices()[0].platform}")
    for r in rows.values():
      print(json.dumps({"config": name, "batch": FLAGS.batch, "variant": r.name,
                        "bytes": r.bytes, "ratio": r.bytes / bp, "programs": r.programs,
                        "compile_s": round(r.compile_s, 1), "detail": r.detail}), flush=True)
    jax.clear_caches()


if __name__ == "__main__":
  app.run(main)
