"""Quirk Q23: a module's BN running statistics get one update per covering term (docs/methods.md §1.2)."""
import jax
import numpy as np

from jax_local import experiment, optim, splits
from jax_local.engine import fused
from jax_local.models import build_backbone
from jax_local.train_state import init_state
from tests import helpers

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def _hpff_plan(replicate: bool):
  config = helpers.tiny_config("dgl", depth=8, preset="blocks", plugin="hpff")
  config.method.pff.mode, config.method.pff.patch_loop = "paper_shared_avg", "vmap"
  config.method.replicate_bn_calls = replicate
  backbone = build_backbone(config.model, config.data.num_classes)
  plan = experiment.build_plan(config.method, backbone, splits.get_split("blocks", 8),
                               config.data.num_classes, (MEAN, STD))
  return config, plan


def test_hilo_call_counts():
  """HiLo k=2: module 0 is only in cascade (0,1); inner modules are in their independent term
  and two cascades; the last in final_x and the cascade ending there. Bases: one call."""
  _, plan = _hpff_plan(True)
  L = plan.num_modules
  assert plan.bn_updates == (1,) + (3,) * (L - 2) + (2,)
  assert _hpff_plan(False)[1].bn_updates == ()
  config = helpers.tiny_config("dgl", depth=8, preset="blocks")
  base = experiment.build_plan(config.method, build_backbone(config.model, 10),
                               splits.get_split("blocks", 8), 10)
  assert set(base.bn_updates) == {1}


def test_running_stats_equal_n_sequential_updates():
  """One step with replication = the step without it, its batch statistic b recovered from
  r_1 = 0.9·r_0 + 0.1·b and then applied n times one after another (numpy)."""
  states, plans = {}, {}
  for replicate in (False, True):
    config, plan = _hpff_plan(replicate)
    tx = optim.make_optimizer(config.optim, config.num_epochs, 10)
    state = jax.jit(lambda rng: init_state(plan, tx, rng, helpers.IMAGE_SHAPE))(
        jax.random.PRNGKey(0))
    step = fused.make_train_step(plan, tx)
    r0 = jax.device_get(state.batch_stats["backbone"])
    states[replicate], _ = step(state, helpers.random_batch())
    plans[replicate] = plan
  once = jax.device_get(states[False].batch_stats["backbone"])
  repeated = jax.device_get(states[True].batch_stats["backbone"])
  plan = plans[True]
  checked = 0
  for m, n in enumerate(plan.bn_updates):
    for block in plan.modules[m]:
      for path, r1 in jax.tree_util.tree_leaves_with_path(once[block]):
        start = _at(r0[block], path)
        b = (r1 - 0.9 * start) / 0.1
        r = start
        for _ in range(n):
          r = 0.9 * r + 0.1 * b
        np.testing.assert_allclose(_at(repeated[block], path), r, rtol=1e-5, atol=1e-6)
        checked += n > 1
  assert checked > 0


def _at(tree, path):
  for key in path:
    tree = tree[key.key]
  return tree
