"""Training on real Fashion-MNIST: the loss falls for every base; a killed run resumes exactly."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jax_local import engine, ema, optim
from jax_local.data import input_pipeline
from jax_local.engine.fused import plan_loss
from tests import helpers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("method", ["bp", "greedy", "dgl", "infopro", "predsim"])
def test_loss_falls_on_fashion_mnist(method, fashion_mnist):
  _, full = fashion_mnist
  data = input_pipeline.Dataset(
      "fashion_mnist", (full.train_images[:2048], full.train_labels[:2048]),
      (full.test_images[:8], full.test_labels[:8]), 10, full.mean, full.std, seed=0)
  config = helpers.tiny_config(method, depth=8, preset="uniform_k3")
  config.data.num_classes = 10
  config.optim.lr, config.optim.schedule = 0.05, "constant"
  plan, tx, state = helpers.tiny_plan_and_state(config, data.image_shape)
  schedule = optim.make_schedule(config.optim, 1, 100)
  step = engine.make_train_step("fused", plan, tx, schedule, data.mean, data.std)
  probe = {"image": data.normalise(data.train_images[:256]), "label": data.train_labels[:256]}
  probe = engine.forward.with_image01(probe, data.mean, data.std)

  def probe_loss(s):
    return float(plan_loss(plan, s.params, s.batch_stats, probe)[0])

  before = probe_loss(state)
  for batch in data.train_batches(0, 0, 64, drop_remainder=True):
    state, metrics = step(state, batch)
    if int(state.step) == 24:
      break
  after = probe_loss(state)
  assert np.isfinite(after)
  assert after < 0.9 * before, f"{method}: probe loss {before:.3f} -> {after:.3f}"


def _launch(workdir, data_dir, extra=()):
  cmd = [sys.executable, os.path.join(ROOT, "launch.py"),
         f"--config={ROOT}/configs/fashion_mnist_quickstart.py:dgl", f"--workdir={workdir}",
         "--config.num_epochs=2", "--config.data.train_subset=256", "--config.data.batch_size=64",
         "--config.data.eval_batch_size=1000", "--config.log_every_steps=1",
         "--config.checkpoint_every_steps=1", f"--config.data.tfds_data_dir={data_dir}", *extra]
  return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)


def _losses(workdir):
  """step -> loss from metrics.jsonl; a step logged twice (before a kill and after resume) keeps
  its last value."""
  rows = {}
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    for line in f:
      row = json.loads(line)
      if "loss" in row:
        rows[row["step"]] = row["loss"]
  return rows


def test_kill_and_resume_matches_uninterrupted_run(tmp_path, fashion_mnist):
  data_dir, _ = fashion_mnist
  ref_dir, killed_dir = str(tmp_path / "ref"), str(tmp_path / "killed")
  ref = _launch(ref_dir, data_dir)
  out, _ = ref.communicate(timeout=600)
  assert ref.returncode == 0, out

  victim = _launch(killed_dir, data_dir)
  ckpt = os.path.join(killed_dir, "checkpoints", "3")
  deadline = time.time() + 300
  while not os.path.isdir(ckpt) and victim.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert victim.poll() is None, "run ended before it could be killed"
  victim.send_signal(signal.SIGKILL)
  victim.wait()
  summary_before = os.path.join(killed_dir, "summary.json")
  assert not os.path.exists(summary_before)

  resumed = _launch(killed_dir, data_dir)
  out, _ = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, out
  assert "resumed from step" in out

  ref_losses, resumed_losses = _losses(ref_dir), _losses(killed_dir)
  assert sorted(ref_losses) == sorted(resumed_losses) == list(range(1, 9))
  np.testing.assert_allclose([resumed_losses[s] for s in range(1, 9)],
                             [ref_losses[s] for s in range(1, 9)], rtol=1e-6)
  with open(os.path.join(ref_dir, "summary.json")) as f:
    ref_summary = json.load(f)
  with open(os.path.join(killed_dir, "summary.json")) as f:
    resumed_summary = json.load(f)
  assert ref_summary == resumed_summary
  with open(os.path.join(killed_dir, "history.json")) as f:
    assert [h["epoch"] for h in json.load(f)] == [1, 2]
