"""summary.json says what ran, on what, how long and with which software; the mesh spans the
devices a run is given. One tiny BP run in-process, on two of the emulated devices."""
import json
import logging
import os
import re
import subprocess

import jax
import pytest

from configs import fashion_mnist_quickstart
from jax_local import run_log, train, workdir_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _Capture(logging.Handler):
  def __init__(self):
    super().__init__(logging.INFO)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def test_bp_summary_on_two_chosen_devices(tmp_path, fashion_mnist):
  config = fashion_mnist_quickstart.get_config("bp")
  config.data.train_subset, config.data.test_subset = 256, 200
  config.data.batch_size, config.data.eval_batch_size, config.num_epochs = 64, 200, 1
  config.eval.bn_recompute_batches = 0
  devices = jax.devices()[2:4]
  capture, level = _Capture(), run_log.LOG.level
  run_log.LOG.addHandler(capture)
  run_log.LOG.setLevel(logging.INFO)
  try:
    summary, state = train.train_and_evaluate(config, str(tmp_path / "bp"), return_state=True,
                                              devices=devices)
  finally:
    run_log.LOG.removeHandler(capture)
    run_log.LOG.setLevel(level)

  assert any(m.startswith("data parallel over 2 devices") for m in capture.messages)
  leaf = jax.tree.leaves(state.params)[0]
  assert set(leaf.sharding.device_set) == set(devices)

  with open(tmp_path / "bp" / "summary.json") as f:
    assert json.load(f) == summary
  with open(tmp_path / "bp" / "history.json") as f:
    history = json.load(f)
  assert (summary["method"], summary["base_method"], summary["plugin"], summary["executor"],
          summary["dataset"], summary["split"], summary["num_modules"], summary["epochs"]) == (
              "bp", "bp", "none", "fused", "fashion_mnist", "none", 1, 1)
  assert "mock" not in summary
  total = sum(x.size for x in jax.tree.leaves(state.params))
  assert summary["params_backbone"] > 0
  assert summary["params_backbone"] + summary["params_heads"] == total
  assert summary["final_test_error"] == round(history[-1]["test_error"], 2)
  assert summary["best_test_error"] == summary["final_test_error"]
  assert summary["best_epoch"] == 1
  assert len(repr(summary["final_test_error"]).partition(".")[2]) <= 2
  assert 0 < summary["wall_time_s"] < 600
  assert summary["wall_time_s"] == pytest.approx(history[-1]["elapsed_s"], abs=0.05)
  import flax
  assert (summary["jax_version"], summary["flax_version"]) == (jax.__version__, flax.__version__)
  head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True,
                        text=True).stdout.strip()
  assert re.fullmatch(rf"{head}(-dirty)?", summary["git_commit"]), summary["git_commit"]
  assert not os.path.exists(tmp_path / "bp" / workdir_lock.LOCK_FILE)
