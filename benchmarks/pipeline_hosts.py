"""Images/s of training with `launch.py` when the pipelined executor's two stages are two
processes (jax.distributed on this machine, one device each, values between them by jax's
cross-host transfers), against the same executor in one process on two emulated devices and the
sequential executor on one device (docs/design.md §3.9, README "Pipelined stages on different
hosts").

  python benchmarks/pipeline_hosts.py [--config=configs/cifar.py:cifar10_r32_k16_dgl]
      [--batch=128] [--steps=40] [--microbatches=8] [--mode=sync] [--repeats=1]

Every variant is a fresh `launch.py` run on `--mock_data` (random images in the config's
dataset's shapes) for `steps` steps of one epoch, logging every 10 steps, evaluating on one
batch of test images at the end (outside the timed windows), with one compute
thread per device (`--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`, as
benchmarks/pipeline_throughput.py pins them). This is the trainer's rate, with what it does
each step besides the executor's step (the finite checks of the state, and for the pipelined
executor the copy of every stage's new state to every device). Images/s: the mean of the
trainer's logged windows after the first (which holds the compilation); with --repeats > 1 the
variants alternate and each repeat is a row. Ratios to the sequential executor of the same
repeat.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile

from absl import app, flags

flags.DEFINE_string("config", "configs/cifar.py:cifar10_r32_k16_dgl", "launch.py --config.")
flags.DEFINE_integer("batch", 128, "Global batch size.")
flags.DEFINE_integer("steps", 40, "Training steps per run (one epoch of mock data).")
flags.DEFINE_integer("microbatches", 8, "M of the pipelined executor.")
flags.DEFINE_enum("mode", "sync", ["sync", "async"], "The pipelined executor's mode.")
flags.DEFINE_integer("repeats", 1, "Times each variant runs (alternating).")
FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_EVERY = 10
PIN = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _command(workdir: str, executor: str) -> list[str]:
  return [sys.executable, os.path.join(ROOT, "launch.py"), f"--config={FLAGS.config}",
          f"--workdir={workdir}", f"--mock_data={FLAGS.steps * FLAGS.batch}",
          f"--config.data.batch_size={FLAGS.batch}", f"--config.data.eval_batch_size={FLAGS.batch}",
          f"--config.data.test_subset={FLAGS.batch}",
          "--config.num_epochs=1", f"--config.log_every_steps={LOG_EVERY}",
          f"--config.executor={executor}", "--config.pipeline.stages=2",
          f"--config.pipeline.microbatches={FLAGS.microbatches}",
          f"--config.pipeline.mode={FLAGS.mode}"]


def _run(workdir: str, executor: str, devices: int, processes: int) -> float:
  """Trains one variant; the mean of its logged images/s after the first window."""
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} {PIN}",
         "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo"}
  command = _command(workdir, executor)
  if processes == 1:
    commands = [command]
  else:
    port, transfer = _free_port(), _free_port()
    commands = [command + [f"--coordinator_address=127.0.0.1:{port}",
                           f"--num_processes={processes}", f"--process_id={i}",
                           f"--transfer_address=127.0.0.1:{transfer + i}"]
                for i in range(processes)]
  procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True) for c in commands]
  outs = [p.communicate()[0] for p in procs]
  for p, out in zip(procs, outs):
    if p.returncode:
      raise SystemExit(f"{' '.join(commands[0])} failed:\n{out[-3000:]}")
  rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  rates = [r["images_per_sec"] for r in rows if "images_per_sec" in r and r["step"] > LOG_EVERY]
  if not rates:
    raise SystemExit(f"{workdir}: no logged window after the first; use --steps > {LOG_EVERY}")
  return sum(rates) / len(rates)


def main(argv):
  del argv
  variants = {"sequential, 1 device": ("sequential", 1, 1),
              f"pipelined {FLAGS.mode}, 1 process, 2 devices": ("pipelined", 2, 1),
              f"pipelined {FLAGS.mode}, 2 processes, 1 device each": ("pipelined", 1, 2)}
  print(f"{FLAGS.config}, batch {FLAGS.batch}, M={FLAGS.microbatches}, {FLAGS.steps} steps per "
        f"run; images/s (ratio to sequential)\n")
  print("| repeat | " + " | ".join(variants) + " |")
  print("|---" * (len(variants) + 1) + "|")
  with tempfile.TemporaryDirectory() as tmp:
    for r in range(FLAGS.repeats):
      rates = [_run(os.path.join(tmp, f"{r}_{i}"), *spec)
               for i, spec in enumerate(variants.values())]
      cells = [f"{x:.1f} ({x / rates[0]:.2f})" for x in rates]
      print(f"| {r} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
  app.run(main)
