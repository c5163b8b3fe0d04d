"""Real `launch.py` processes for the fault-injection tests: start, watch, signal, read back."""
import json
import os
import subprocess
import sys
import time

from jax_local.metric_names import WEIGHTED_TOTAL
from tests.xla_flags import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS_PER_EPOCH, EPOCHS = 16, 2
TINY = ("--config.num_epochs=2", "--config.data.train_subset=512", "--config.data.batch_size=32",
        "--config.data.test_subset=1000", "--config.data.eval_batch_size=500",
        "--config.eval.bn_recompute_batches=2", "--config.log_every_steps=1",
        "--config.eval_every_epochs=2")


class Run:
  """One `launch.py` process: the quickstart config with method greedy (of the local methods the
  fastest to compile), the TINY overrides and `extra`; its output goes to `<workdir>.<n>.log`."""

  def __init__(self, workdir, env, *extra):
    self.workdir = str(workdir)
    n = 0
    while os.path.exists(f"{self.workdir}.{n}.log"):
      n += 1
    self.log_path = f"{self.workdir}.{n}.log"
    cmd = [sys.executable, os.path.join(ROOT, "launch.py"),
           f"--config={ROOT}/configs/fashion_mnist_quickstart.py:greedy",
           f"--workdir={self.workdir}", *TINY, *extra]
    with open(self.log_path, "w") as log:
      self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)

  def wait(self, timeout=600) -> int:
    return self.proc.wait(timeout=timeout)

  @property
  def output(self) -> str:
    with open(self.log_path) as f:
      return f.read()

  def alive(self) -> bool:
    return self.proc.poll() is None

  def wait_for(self, condition, timeout=300, poll=0.005):
    """Polls `condition()` until true; fails if the process ends first or time runs out."""
    deadline = time.time() + timeout
    while not condition():
      assert self.alive(), f"run ended before the condition held:\n{self.output[-3000:]}"
      assert time.time() < deadline, "timed out"
      time.sleep(poll)


def env_with_cache(cache_dir):
  """The test environment plus a persistent XLA compilation cache shared by all runs, holding
  every program however quick its compile, on one CPU device (conftest's 8 emulated devices are
  for the sharding tests), with most XLA optimisations off (cheaper compiles, as conftest's
  `fast_compile`; runs stay deterministic)."""
  return {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache_dir),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
          "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
          "XLA_FLAGS": xla_flags(1),
          "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}


def losses(workdir) -> dict:
  """step -> loss from metrics.jsonl (a step logged twice, before a stop and after the resume,
  keeps its last value)."""
  rows = {}
  path = os.path.join(str(workdir), "metrics.jsonl")
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        row = json.loads(line)
        if WEIGHTED_TOTAL in row:
          rows[row["step"]] = row[WEIGHTED_TOTAL]
  return rows


def read_json(path):
  with open(path) as f:
    return json.load(f)


def results(workdir) -> dict:
  """summary.json without the fields that differ between identical runs (wall time)."""
  summary = read_json(os.path.join(str(workdir), "summary.json"))
  return {k: v for k, v in summary.items() if k != "wall_time_s"}


def complete_checkpoints(workdir) -> list:
  """Steps of the finished checkpoints (orbax renames a temporary directory when complete)."""
  d = os.path.join(str(workdir), "checkpoints")
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def writing_checkpoint(workdir) -> bool:
  """True while orbax writes a checkpoint (its temporary directory exists)."""
  d = os.path.join(str(workdir), "checkpoints")
  return os.path.isdir(d) and any("tmp" in n for n in os.listdir(d))
