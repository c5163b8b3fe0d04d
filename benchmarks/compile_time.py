"""Compile time of a config's training step (its own executor), compile-only, CIFAR shapes.

  python benchmarks/compile_time.py --configs=cifar10_r110_k55_dgl,cifar10_r110_k55_infopro \
      [--batch=1024] [--out=/tmp/compile.md]

For the sequential executor every distinct program of a step is lowered and compiled
(`Executor.lower`); for the fused executor the one step. Reports wall time and this
process's CPU time (user + system, all threads) over lowering + compiling: on a shared machine
the wall time includes waiting for the CPU, the CPU time does not, and XLA:CPU compiles
mostly on one thread, so the CPU time is close to the wall time on an idle machine.
"""
import sys
import time

from absl import app, flags
import jax

sys.path.insert(0, ".")
from benchmarks import grid  # noqa: E402
from jax_local import engine, memory  # noqa: E402

flags.DEFINE_list("configs", ["cifar10_r110_k55_dgl"],
                  "Published row names or configs/cifar.py cell names (benchmarks/grid.py).")
flags.DEFINE_integer("batch", 1024, "Global batch size.")
flags.DEFINE_string("out", "", "Markdown table (appended row by row).")
FLAGS = flags.FLAGS


def compile_step(config, batch_size: int) -> int:
  """Lowers and compiles the config's train step; returns the number of programs."""
  s = memory.setup(config)
  state, batch = memory.abstract_inputs(s.plan, s.tx, s.image_shape, batch_size)
  step = engine.make_train_step(config.executor, s.plan, s.tx)
  programs = step.lower(state, batch)
  for program in programs:
    program.compile()
  return len(programs)


def main(_):
  header = (f"\nbatch {FLAGS.batch}, {jax.devices()[0].platform}, jax {jax.__version__}\n\n"
            "| config | executor | programs | compile wall s | compile CPU s |\n"
            "|---|---|---|---|---|\n")
  print(header, end="")
  if FLAGS.out:
    with open(FLAGS.out, "a") as f:
      f.write(header)
  for name in FLAGS.configs:
    config = grid.get_config(name)
    config.data.batch_size = config.data.eval_batch_size = FLAGS.batch
    wall, cpu = time.perf_counter(), time.process_time()
    programs = compile_step(config, FLAGS.batch)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    line = f"| {name} | {config.executor} | {programs} | {wall:.0f} | {cpu:.0f} |\n"
    print(line, end="", flush=True)
    if FLAGS.out:
      with open(FLAGS.out, "a") as f:
        f.write(line)
    jax.clear_caches()


if __name__ == "__main__":
  app.run(main)
