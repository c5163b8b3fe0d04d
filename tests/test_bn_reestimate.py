"""Re-estimated BatchNorm statistics equal a numpy average of per-batch statistics.

The reference captures the input of every BatchNorm layer during a train-mode forward of the
backbone (flax's method interception), computes its mean and biased variance over (N, H, W) in
float64 numpy (per device group, then averaged over groups, for per-device statistics) and
averages them over the batches. It shares with `jax_local.bn_reestimate` only the forward of
each block. The states come from two training steps of each executor, on one device and on the
8 emulated devices of conftest.py.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_local import bn_reestimate, engine, parallel
from jax_local.models import layers
from jax_local.models.backbone import apply_block
from tests import helpers

pytestmark = pytest.mark.multi_device

N, NUM_BATCHES = 32, 3
MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def _reference(plan, params, stats, images, groups):
  """{(block, module path): (mean, var)} averaged over the batches in `images`."""
  sums = {}
  for image in images:
    captured = []

    def capture(next_fun, args, kwargs, context):
      if isinstance(context.module, layers.BatchNorm) and context.method_name == "__call__":
        captured.append((context.module.path, np.asarray(args[0], np.float64)))
      return next_fun(*args, **kwargs)

    h = image
    for module in plan.modules:
      for block in module:
        captured.clear()
        with nn.intercept_methods(capture):
          h, _ = apply_block(plan.backbone.module(block), params["backbone"][block],
                             stats["backbone"][block], h, train=True)
        for path, x in captured:
          x = x.reshape(groups, -1, x.shape[-1])
          mean = x.mean(1)
          var = ((x - mean[:, None]) ** 2).mean(1)
          key = (block, tuple(path))
          m, v = sums.get(key, (0.0, 0.0))
          sums[key] = (m + mean.mean(0), v + var.mean(0))
  return {k: (m / len(images), v / len(images)) for k, (m, v) in sums.items()}


def _lookup(stats, block, path):
  node = stats["backbone"][block]
  for name in path:
    node = node[name]
  return node


@pytest.mark.parametrize("executor,devices,bn_stats", [
    ("fused", 1, "global"), ("sequential", 8, "global"), ("fused", 8, "per_device")])
def test_reestimated_statistics_equal_numpy_average(executor, devices, bn_stats):
  config = helpers.tiny_config("dgl", depth=8, preset="uniform_k3")
  config.model.bn_stats = bn_stats
  plan, tx, state = helpers.tiny_plan_and_state(config, normalisation=(MEAN, STD))
  par = parallel.Parallel.from_config(config, parallel.make_mesh(jax.devices()[:devices]))
  groups = devices if bn_stats == "per_device" else 1
  step = par.train_step(engine.make_train_step(executor, plan, tx))
  state = par.put_replicated(state)
  batches = [{k: np.asarray(v) for k, v in helpers.random_batch(N, seed=s).items()
              if k != "image01"} for s in range(2 + NUM_BATCHES)]
  for batch in batches[:2]:
    state, _ = step(state, par.global_batch(batch))

  images = [b["image"] for b in batches[2:]]
  got, used, _ = bn_reestimate.reestimate(
      bn_reestimate.make_batch_statistics(plan, par), state.params, state.batch_stats,
      iter([par.global_batch({"image": x}) for x in images] + [None]), NUM_BATCHES)
  assert used == NUM_BATCHES

  params, stats = jax.device_get((state.params, state.batch_stats))
  with layers.policy(layers.Policy(None, groups)):
    want = _reference(plan, params, stats, [jnp.asarray(x) for x in images], groups)
  every_bn = {(jax.tree_util.keystr(p[:1])[2:-2], tuple(k.key for k in p[1:-1]))
              for p, _ in jax.tree_util.tree_leaves_with_path(stats["backbone"])
              if p[-1].key == "mean"}
  assert set(want) == every_bn and len(every_bn) == 9  # ResNet-8: stem, 3x2 in blocks, 2 shortcuts
  for (block, path), (mean, var) in want.items():
    leaf = _lookup(got, block, path)
    np.testing.assert_allclose(np.asarray(leaf["mean"]), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(leaf["var"]), var, rtol=1e-4, atol=1e-5)
  # the running statistics of the state differ: the test would notice the wrong statistics
  block, path = next(iter(want))
  assert not np.allclose(np.asarray(_lookup(stats, block, path)["mean"]), want[(block, path)][0],
                         rtol=1e-3, atol=1e-4)
  assert jax.tree.structure(got) == jax.tree.structure(state.batch_stats)
