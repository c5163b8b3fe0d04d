"""jax_local without TensorFlow: a whole run on Fashion-MNIST (training steps, evaluation,
checkpoint, metrics.jsonl, hparams.json, TensorBoard events) and the compile-only memory report,
in a subprocess where `tensorflow`, `tensorflow_datasets` and `clu` (whose metric writers
import TensorFlow) cannot be imported.

The subprocess wraps every finder of `sys.meta_path` so that these names are not found, as if
they were not installed: `import tensorflow` raises ModuleNotFoundError and
`importlib.util.find_spec("tensorflow")` is None (libraries that probe for TensorFlow see it
absent, not broken).
"""
import json
import math
import os
import subprocess
import sys
import textwrap

from tests.xla_flags import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HIDDEN = ("tensorflow", "tensorflow_datasets", "clu")

HIDE = textwrap.dedent(f"""
    import sys

    HIDDEN = {HIDDEN!r}

    class _Hide:
      def __init__(self, finder):
        self.finder = finder

      def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in HIDDEN:
          return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

      def __getattr__(self, attr):
        return getattr(self.finder, attr)

    sys.meta_path[:] = [_Hide(f) for f in sys.meta_path]
    """)

SCRIPT = HIDE + textwrap.dedent("""
    import importlib.util, json, os, sys
    for name in HIDDEN:
      assert importlib.util.find_spec(name) is None, name
      try:
        __import__(name)
        raise AssertionError(name + " imported")
      except ModuleNotFoundError:
        pass

    import jax_local, launch
    from jax_local import memory, train
    from tests import helpers

    out, workdir = {}, sys.argv[1]

    # a whole run (training steps, evaluation, checkpoint, metric writers) on Fashion-MNIST,
    # read from Debian's idx files with NumPy
    from configs import fashion_mnist_quickstart
    c = fashion_mnist_quickstart.get_config("dgl")
    c.num_epochs, c.data.batch_size, c.data.eval_batch_size = 1, 32, 50
    c.data.train_subset, c.data.test_subset, c.log_every_steps = 64, 100, 1
    c.eval.bn_recompute_batches = 0
    out["summary"] = train.train_and_evaluate(c, workdir)

    # the compile-only memory report of a tiny config
    m = helpers.tiny_config("greedy", depth=8, preset="uniform_k3")
    m.data.batch_size = 16
    out["memory"] = {r.name: r.bytes for r in memory.memory_report(m, ("bp", "sequential"))}

    out["loaded"] = sorted({k.partition(".")[0] for k in sys.modules} & set(HIDDEN))
    print(json.dumps(out))
    """)


def test_training_and_memory_report_run_without_tensorflow(tmp_path):
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu",
         "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}   # compiles fast; nothing here is timed
  env["XLA_FLAGS"] = xla_flags()   # one device, as on a single-GPU machine
  run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=240)
  assert run.returncode == 0, run.stderr[-4000:]
  out = json.loads(run.stdout.strip().splitlines()[-1])
  assert out["loaded"] == []
  summary = out["summary"]
  assert summary["dataset"] == "fashion_mnist" and summary["epochs"] == 1
  assert 0 <= summary["final_test_error"] <= 100
  with open(tmp_path / "metrics.jsonl") as f:
    rows = [json.loads(line) for line in f]
  losses = [r["train/loss"] for r in rows if "train/loss" in r]
  assert [r["step"] for r in rows if "train/loss" in r] == [1, 2] and all(map(math.isfinite, losses))
  assert any("eval/test_error" in r for r in rows)
  with open(tmp_path / "hparams.json") as f:
    assert json.load(f)["num_modules"] == 3
  events = [n for n in os.listdir(tmp_path) if n.startswith("events.out.tfevents.")]
  assert len(events) == 1 and os.path.getsize(tmp_path / events[0]) > 0
  assert 0 < out["memory"]["sequential"] < out["memory"]["bp"]
