"""Images/s of BP, the sequential executor and the pipelined executor on emulated CPU devices,
each device pinned to one compute thread (docs/design.md §3.9).

  python benchmarks/pipeline_throughput.py [--batch=128] [--steps=4] [--rounds=3]
      [--configs=cifar10_r32_k16_dgl,cifar10_r32_k16_infopro] [--microbatches=8]

XLA:CPU runs with `--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1`, set before JAX starts, so each emulated device computes on one
thread and two devices are two workers. Three parts, printed as Markdown:

1. Concurrency: one jitted loop of matrix products per device, timed alone on device 0, alone
   on device 1, and both dispatched together (ratio together / alone: 1 = the devices run at
   once, 2 = one after the other). For comparison, the same loop in NumPy (one BLAS thread) as
   one process alone and as two processes started together: what the cores give two workers
   that share no runtime.
2. Threads: the BP step's time on one device, to compare with a run without the pinning flags
   (`--pin=false`), which lets XLA:CPU use every core for one program.
3. Throughput per config (random CIFAR-10-shaped data): BP (fused executor on the BP plan) and
   the sequential executor on device 0, the pipelined executor sync (M micro-batches, one update)
   and async (one update per micro-batch) on 2 devices, stages balanced by FLOPs. After one
   warm-up call (compilation), `rounds` rounds in which each variant runs `steps` steps without
   blocking between them, then blocks; variants interleave per round so that load from other
   processes hits them alike. Images/s: the best round's; ratios to the sequential executor.
"""
import os
import sys

from absl import app, flags

flags.DEFINE_integer("batch", 128, "Global batch size.")
flags.DEFINE_integer("steps", 4, "Steps per timed round (dispatched without blocking).")
flags.DEFINE_integer("rounds", 3, "Timed rounds per variant (the best one counts).")
flags.DEFINE_integer("microbatches", 8, "M of the pipelined executor.")
flags.DEFINE_list("configs", ["cifar10_r32_k16_dgl", "cifar10_r32_k16_infopro"],
                  "configs/cifar.py cell names.")
flags.DEFINE_list("variants", [], "Only these variants (names as printed; default: all). "
                  "The sequential executor always runs: the ratios are to it.")
flags.DEFINE_bool("pin", True, "One compute thread per emulated device.")
flags.DEFINE_integer("depth", 0, "If > 0, overrides the depth and uses split preset "
                     "`preset` (tiny smoke runs).")
flags.DEFINE_string("preset", "uniform_k3", "Split preset with --depth.")
FLAGS = flags.FLAGS


def _flags_from_argv():
  """XLA_FLAGS must be set before JAX is imported: read --pin from argv directly."""
  pin = not any(a in ("--pin=false", "--nopin") for a in sys.argv)
  xla = ["--xla_force_host_platform_device_count=2"]
  if pin:
    xla += ["--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1"]
  os.environ["XLA_FLAGS"] = " ".join(xla)


_flags_from_argv()

import subprocess  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

sys.path.insert(0, ".")
from benchmarks import timing  # noqa: E402
from configs import cifar  # noqa: E402
from jax_local import memory  # noqa: E402
from jax_local.engine import fused, pipelined, sequential  # noqa: E402
from jax_local.train_state import init_state  # noqa: E402


def concurrency():
  """(alone on device 0, alone on device 1, both together) in seconds, best of 3."""
  loop = jax.jit(lambda x: jax.lax.fori_loop(0, 400, lambda i, y: jnp.tanh(y @ y), x))  # ~0.5 s
  xs = [jax.device_put(jnp.full((384, 384), 0.01), d) for d in jax.devices()[:2]]
  jax.block_until_ready([loop(x) for x in xs])

  def best(run):
    times = []
    for _ in range(3):
      t = time.perf_counter()
      jax.block_until_ready(run())
      times.append(time.perf_counter() - t)
    return min(times)

  return (best(lambda: loop(xs[0])), best(lambda: loop(xs[1])),
          best(lambda: [loop(x) for x in xs]))


# The concurrency loop in NumPy, one BLAS thread; prints its best time of 3 in seconds.
NUMPY_LOOP = """
import time
import numpy as np
a = np.full((384, 384), 0.01, np.float32)
def run():
  y = a
  for _ in range(400):
    y = np.tanh(y @ y)
best = float("inf")
run()
for _ in range(3):
  t = time.perf_counter()
  run()
  best = min(best, time.perf_counter() - t)
print(best)
"""


def numpy_processes():
  """(alone, together): NUMPY_LOOP's time in one process, and the slower of two processes
  started together."""
  env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
         "MKL_NUM_THREADS": "1"}

  def start():
    return subprocess.Popen([sys.executable, "-c", NUMPY_LOOP], env=env, stdout=subprocess.PIPE,
                            text=True)

  def seconds(proc):
    out, _ = proc.communicate()
    return float(out.split()[-1])

  alone = seconds(start())
  pair = [start(), start()]
  return alone, max(seconds(p) for p in pair)


def _config(name):
  config = cifar.get_config(name)
  config.data.batch_size = config.data.eval_batch_size = FLAGS.batch
  if FLAGS.depth:
    config.model.depth, config.split.preset = FLAGS.depth, FLAGS.preset
  return config


def throughput(name):
  """{variant: images/s} and the pipelined executor's boundaries for one config."""
  config = _config(name)
  s = memory.setup(config)
  n = FLAGS.batch
  d0 = jax.devices()[0]
  batch = {"image": jax.random.normal(jax.random.PRNGKey(1), (n, *s.image_shape)),
           "label": jnp.arange(n, dtype=jnp.int32) % config.data.num_classes}
  batch = jax.device_put(batch, d0)
  m = FLAGS.microbatches
  variants = {
      "bp": (fused.make_train_step(s.bp_plan, s.bp_tx), s.bp_plan, s.bp_tx),
      "sequential": (sequential.make_train_step(s.plan, s.tx), s.plan, s.tx),
      f"pipelined sync M={m}": (pipelined.PipelinedStep(s.plan, s.tx, 2, None, m, "sync"),
                                s.plan, s.tx),
      f"pipelined async M={m}": (pipelined.PipelinedStep(s.plan, s.tx, 2, None, m, "async"),
                                 s.plan, s.tx),
      f"pipelined sync M={m}, 1 stage": (pipelined.PipelinedStep(s.plan, s.tx, 1, None, m, "sync"),
                                         s.plan, s.tx),
      f"pipelined async M={m}, 1 stage": (pipelined.PipelinedStep(s.plan, s.tx, 1, None, m,
                                                                  "async"), s.plan, s.tx)}
  if FLAGS.variants:
    variants = {v: x for v, x in variants.items() if v in FLAGS.variants or v == "sequential"}
  states = {}
  for v, (step, plan, tx) in variants.items():
    state = jax.device_put(init_state(plan, tx, jax.random.PRNGKey(0), s.image_shape), d0)
    states[v] = jax.block_until_ready(step(state, batch))[0]   # compiles
  best = {v: float("inf") for v in variants}
  for _ in range(FLAGS.rounds):
    for v, (step, _, _) in variants.items():
      seconds, states[v] = timing.timed_steps(step, states[v], batch, FLAGS.steps)
      best[v] = min(best[v], seconds)
  bounds = next((step.boundaries for step, _, _ in variants.values()
                 if getattr(step, "num_stages", 1) == 2), None)
  return {v: n * FLAGS.steps / t for v, t in best.items()}, bounds, s.plan.num_modules


def main(_):
  print(f"XLA_FLAGS={os.environ['XLA_FLAGS']}; {jax.device_count()} devices; batch "
        f"{FLAGS.batch}; best of {FLAGS.rounds} rounds of {FLAGS.steps} steps\n")
  a0, a1, both = concurrency()
  print("| loop | s |\n|---|---|\n"
        f"| device 0 alone | {a0:.3f} |\n| device 1 alone | {a1:.3f} |\n"
        f"| both together | {both:.3f} (ratio to alone {both / max(a0, a1):.2f}) |")
  alone, together = numpy_processes()
  print(f"| NumPy, one process | {alone:.3f} |\n| NumPy, two processes together | "
        f"{together:.3f} (ratio to alone {together / alone:.2f}) |\n")
  for name in FLAGS.configs:
    rates, bounds, k = throughput(name)
    seq = rates["sequential"]
    print(f"{name}: {k} modules, stages cut before module {bounds}\n\n| variant | images/s | "
          "ratio to sequential |\n|---|---|---|")
    for v, r in rates.items():
      print(f"| {v} | {r:.1f} | {r / seq:.2f} |")
    print()


if __name__ == "__main__":
  app.run(main)
