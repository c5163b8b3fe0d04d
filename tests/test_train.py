"""Training on real Fashion-MNIST: the loss falls for every base.

Killing and resuming a real `launch.py` run is tested in tests/test_faults.py."""

import jax
import numpy as np
import pytest

from jax_local import engine
from jax_local.data import input_pipeline
from jax_local.engine.fused import plan_loss
from tests import helpers


@pytest.mark.parametrize("method", ["bp", "greedy", "dgl", "infopro", "predsim"])
def test_loss_falls_on_fashion_mnist(method, fashion_mnist):
  full = fashion_mnist
  data = input_pipeline.Dataset(
      "fashion_mnist", (full.train_images[:2048], full.train_labels[:2048]),
      (full.test_images[:8], full.test_labels[:8]), 10, full.mean, full.std, seed=0)
  config = helpers.tiny_config(method, depth=8, preset="uniform_k3")
  config.data.num_classes = 10
  config.optim.lr, config.optim.schedule = 0.05, "constant"
  plan, tx, state = helpers.tiny_plan_and_state(config, data.image_shape,
                                                normalisation=(data.mean, data.std))
  step = engine.make_train_step("fused", plan, tx)
  probe = {"image": data.normalise(data.train_images[:256]), "label": data.train_labels[:256]}
  probe = engine.forward.with_image01(probe, plan.normalisation)

  loss_fn = jax.jit(lambda params, stats: plan_loss(plan, params, stats, probe)[0])

  def probe_loss(s):
    return float(loss_fn(s.params, s.batch_stats))

  before = probe_loss(state)
  for batch in data.train_batches(0, 0, 32, drop_remainder=True):
    state, metrics = step(state, batch)
    if int(state.step) == 24:
      break
  after = probe_loss(state)
  assert np.isfinite(after)
  assert after < 0.9 * before, f"{method}: probe loss {before:.3f} -> {after:.3f}"
