"""Step time of BP, fused and sequential executors in one process, with ratios to BP.

  python benchmarks/speed.py --out=/tmp/speed.md [--batch=128] [--rounds=7] [--configs=a,b]

Per config (CIFAR-10 shapes, random data): BP (the fused executor on the BP plan of the same
backbone), the fused and the sequential executor of the config's plan. BP and fused are
compiled ahead of time (lower + compile, timed); the sequential step compiles its programs on
its first call (compile s = first call - median step). Then one warm-up step, then `rounds`
rounds in which every variant runs one step (blocking), interleaved so that
load from other processes hits all variants alike; the table gives the median per variant.
--configs defaults to benchmarks/grid.py. The BP step is compiled once per backbone and batch and
reused by the configs that share them (its compile time is repeated in their rows).
"""
import statistics
import sys
import time

from absl import app, flags
import jax
import jax.numpy as jnp

sys.path.insert(0, ".")
from benchmarks import grid  # noqa: E402
from benchmarks.grid import CIFAR10_GRID  # noqa: E402
from jax_local import memory  # noqa: E402
from jax_local.engine import fused, sequential  # noqa: E402
from jax_local.train_state import init_state  # noqa: E402

flags.DEFINE_string("out", "/tmp/speed.md", "Markdown table (appended row by row).")
flags.DEFINE_integer("batch", 128, "Global batch size (CPU-scale).")
flags.DEFINE_integer("rounds", 7, "Timed steps per variant.")
flags.DEFINE_list("configs", list(CIFAR10_GRID),
                  "Published row names or configs/cifar.py cell names (benchmarks/grid.py).")
flags.DEFINE_list("variants", ["fused", "sequential"], "Executors of the config's plan (+ bp).")
flags.DEFINE_string("patch_loop", "", "If set, overrides config.method.pff.patch_loop.")
FLAGS = flags.FLAGS


def _timed(step, state, batch):
  t = time.perf_counter()
  state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  return state, time.perf_counter() - t


def main(_):
  with open(FLAGS.out, "a") as f:
    loop = f", pff.patch_loop={FLAGS.patch_loop}" if FLAGS.patch_loop else ""
    f.write(f"\nbatch {FLAGS.batch}{loop}, {jax.devices()[0].platform}, median of {FLAGS.rounds} "
            "interleaved steps; s/step (ratio to BP), compile s\n\n| config | modules | bp | "
            "fused | sequential | bp compile | fused compile | seq. compile |\n"
            "|---|---|---|---|---|---|---|---|\n")
  bp_steps = {}   # (model, dataset, batch) -> (compiled BP step, its compile s): one per backbone
  for name in FLAGS.configs:
    config = grid.get_config(name)
    config.data.batch_size = config.data.eval_batch_size = FLAGS.batch
    if FLAGS.patch_loop:
      config.method.pff.patch_loop = FLAGS.patch_loop
    s = memory.setup(config)
    n = FLAGS.batch
    batch = {"image": jax.random.normal(jax.random.PRNGKey(1), (n, *s.image_shape)),
             "label": jnp.arange(n, dtype=jnp.int32) % config.data.num_classes}
    variants = {
        "bp": (fused.make_train_step, s.bp_plan, s.bp_tx),
        "fused": (fused.make_train_step, s.plan, s.tx),
        "sequential": (sequential.make_train_step, s.plan, s.tx)}
    variants = {v: x for v, x in variants.items() if v == "bp" or v in FLAGS.variants}
    steps, states, compile_s, times = {}, {}, {}, {}
    bp_key = (config.model.to_json(), config.data.name, n)
    for v, (make, plan, tx) in variants.items():
      state = init_state(plan, tx, jax.random.PRNGKey(0), s.image_shape)
      if v == "bp" and bp_key in bp_steps:   # compiled for an earlier config of this backbone
        steps[v], compile_s[v] = bp_steps[bp_key]
      elif v == "sequential":   # its programs compile on the first call: (first call - median)
        steps[v] = make(plan, tx)
        state, first_call = _timed(steps[v], state, batch)
      else:
        t = time.perf_counter()
        (lowered,) = make(plan, tx).lower(state, batch)
        steps[v] = lowered.compile()
        compile_s[v] = time.perf_counter() - t
        if v == "bp":
          bp_steps[bp_key] = steps[v], compile_s[v]
      states[v], _ = _timed(steps[v], state, batch)
      times[v] = []
    for _ in range(FLAGS.rounds):
      for v in variants:
        states[v], dt = _timed(steps[v], states[v], batch)
        times[v].append(dt)
    med = {v: statistics.median(t) for v, t in times.items()}
    if "sequential" in med:
      compile_s["sequential"] = first_call - med["sequential"]
    cell = lambda v: f"{med[v]:.3f} ({med[v] / med['bp']:.2f})" if v in med else "-"
    comp = lambda v: f"{compile_s[v]:.0f}" if v in med else "-"
    line = (f"| {name} | {s.plan.num_modules} | {med['bp']:.3f} | {cell('fused')} | "
            f"{cell('sequential')} | {comp('bp')} | {comp('fused')} | {comp('sequential')} |\n")
    with open(FLAGS.out, "a") as f:
      f.write(line)
    print(line, {v: [round(x, 3) for x in t] for v, t in times.items()}, flush=True)
    del steps, states
    jax.clear_caches()


if __name__ == "__main__":
  app.run(main)
