"""A few real training steps on Fashion-MNIST lower the loss for every plug-in and every base
it composes with (`Plugin.composes`), each at least once: the bases that compose with a plug-in
take the plug-ins in turn (the gradient routing of the pairs is checked in
test_plugins_routing.py, their executors in test_sequential.py); and for AugLocal.

Tiny on purpose: ResNet-8 cut into 3 modules (stem..1.0 / 2.0 / 3.0+fc; MLM with k=2 so that a
LAM term exists), 32 real training images at 28x28 (stage-3 maps are 7x7, so patched heads run
the `unrolled` loop), 4 SGD steps at a constant LR on that batch, compiled without LLVM
optimisations; the plan's total loss (computed before each update) must drop.
"""
import numpy as np
import pytest

from jax_local import methods, plugins
from jax_local.data import fashion_mnist_idx
from tests.test_plugins_ema import _constant_lr
from tests.test_plugins_routing import build, plugin_config
from jax_local.engine import fused

def _each_plugin_and_base_once():
  names = [p for p in plugins.REGISTRY.names() if p != "none"]
  bases = [b for b in methods.REGISTRY.names()
           if any(plugins.REGISTRY.get(p).composes(methods.REGISTRY.get(b)) for p in names)]
  pairs = []
  for i in range(max(len(bases), len(names))):
    base = bases[i % len(bases)]
    plugin = next(p for j in range(len(names)) for p in [names[(i + j) % len(names)]]
                  if plugins.REGISTRY.get(p).composes(methods.REGISTRY.get(base)))
    pairs.append((base, plugin))
  assert {p for _, p in pairs} == set(names) and {b for b, _ in pairs} == set(bases)
  return pairs


PAIRS = _each_plugin_and_base_once() + [("auglocal", "none")]
MEAN, STD = (0.286,), (0.353,)


@pytest.fixture(scope="module")
def fm_batch():
  images, labels = fashion_mnist_idx.read_split(fashion_mnist_idx.DEFAULT_MANUAL_DIR, "train")
  x = (images[:32].astype(np.float32) / 255.0 - MEAN[0]) / STD[0]
  return {"image": x, "label": labels[:32].astype(np.int32)}


@pytest.mark.parametrize("base,plugin", PAIRS, ids=[f"{b}-{p}" for b, p in PAIRS])
def test_few_steps_lower_the_loss(base, plugin, fm_batch):
  c = _constant_lr(plugin_config(base, plugin, preset="blocks", **{
      "pff.patch_loop": "unrolled", "auglocal.aux_depth": 1, "mlm.k": 2}))
  c.data.num_classes = 10
  plan, tx, state = build(c, image_shape=(28, 28, 1), normalisation=(MEAN, STD))
  step = fused.make_train_step(plan, tx)
  losses = []
  for _ in range(4):
    state, metrics = step(state, fm_batch)
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
