"""EMA copies of MAN and LAM through the fused train step (docs/methods.md §1.6.5, §8.2, §9.1).

- EMA rule: after each step, ema ← m·ema + (1−m)·θ_source with θ_source the PRE-step parameters,
  checked against a hand computation over several steps;
- the optimizer state holds nothing for EMA copies (trainable copies do have state);
- LAM `ema_update = last_only` (quirk Q7) leaves every copy but the last LAM's at its initial value;
- copy_init: copy_of_target copies start equal to their source block, independent ones do not.
"""
import jax
import numpy as np

from jax_local.engine import fused
from jax_local import experiment, optim, part_optimizer, splits
from jax_local.models import build_backbone
from jax_local.train_state import init_state
from tests import helpers
from tests.test_plugins_routing import _get, build, plugin_config


NORM = ((0.5,) * 3, (0.5,) * 3)


def _constant_lr(c, lr=0.05):
  c.optim.schedule, c.optim.lr = "constant", lr
  return c


def _leaf_paths(tree):
  return ["/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path)
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def test_man_ema_rule_and_optimizer_state():
  c = _constant_lr(plugin_config("greedy", "man", preset="blocks", **{"man.ema_decay": 0.9}))
  plan, tx, state = build(c, normalisation=NORM)
  pairs = plan.ema_pairs
  assert [(p.head, p.path, p.source) for p in pairs] == [("m0", ("ema",), "s2b0"),
                                                         ("m1", ("ema",), "s3b0")]
  for p in pairs:  # copy_init = independent (Q14): fresh draws, not copies of the source
    kernel = ("Conv_0", "Conv_0", "kernel")
    assert not np.allclose(_get(state.params["heads"][p.head]["ema"], kernel),
                           _get(state.params["backbone"][p.source], kernel))
  opt_paths = _leaf_paths(state.opt_state)
  assert not [q for q in opt_paths if "/ema/" in q], "optimizer state holds EMA copies"
  assert [q for q in opt_paths if "/lb/" in q], "the trainable LB copies need optimizer state"

  batch = helpers.random_batch()
  step = fused.make_train_step(plan, tx)
  expected = {p.head: jax.device_get(_get(state.params["heads"], (p.head, "ema"))) for p in pairs}
  for _ in range(3):
    pre = jax.device_get(state.params)
    state, _ = step(state, batch)
    post = jax.device_get(state.params)
    for p in pairs:
      expected[p.head] = jax.tree.map(lambda e, s: 0.9 * e + 0.1 * s, expected[p.head],
                                      pre["backbone"][p.source])
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                   _get(post["heads"], (p.head, "ema")), expected[p.head])
      assert not np.allclose(post["backbone"][p.source]["Conv_0"]["Conv_0"]["kernel"],
                             pre["backbone"][p.source]["Conv_0"]["Conv_0"]["kernel"])


def test_lam_last_only_and_copy_of_target():
  c = _constant_lr(plugin_config("greedy", "mlaan", **{"mlm.k": 2, "lam.ema_update": "last_only",
                                                        "lam.ema_decay": 0.9}))
  plan, tx, state = build(c, normalisation=NORM)
  assert [(p.head, p.decay) for p in plan.ema_pairs] == [("cas1", 1.0), ("cas2", 0.9)]
  init = jax.device_get(state.params)
  for head in ("cas1", "cas2"):  # copy_of_target: Aug and EMA copies equal their source at init
    for copy, source in plan.heads[head].copy_sources:
      jax.tree.map(np.testing.assert_array_equal, init["heads"][head][copy],
                   init["backbone"][source])
  batch = helpers.random_batch()
  step = fused.make_train_step(plan, tx)
  for _ in range(2):
    state, _ = step(state, batch)
  post = jax.device_get(state.params)
  jax.tree.map(np.testing.assert_array_equal, post["heads"]["cas1"]["ema0"],
               init["heads"]["cas1"]["ema0"])
  moved = jax.tree.map(lambda a, b: not np.allclose(a, b), post["heads"]["cas2"]["ema0"],
                       init["heads"]["cas2"]["ema0"])
  assert any(jax.tree.leaves(moved))
  assert not np.allclose(post["heads"]["cas1"]["aug0"]["Conv_0"]["Conv_0"]["kernel"],
                         init["heads"]["cas1"]["aug0"]["Conv_0"]["Conv_0"]["kernel"])


def test_copies_own_their_buffers_so_a_state_can_be_donated():
  """init_state outside jit: copy_of_target copies must not alias their source block's arrays,
  or donating the state fails ("donate the same buffer twice")."""
  config = plugin_config("dgl", "mlaan", preset="blocks", **{"mlm.k": 2})
  backbone = build_backbone(config.model, config.data.num_classes)
  split = splits.get_split("blocks", config.model.depth)
  plan = experiment.build_plan(config.method, backbone, split, config.data.num_classes,
                               ((0.5,) * 3, (0.25,) * 3))
  tx = part_optimizer.PartOptimizer(optim.make_optimizer(config.optim, config.num_epochs, 10),
                                    plan.ema_pairs)
  state = init_state(plan, tx, jax.random.PRNGKey(0), helpers.IMAGE_SHAPE)
  pointers = [x.unsafe_buffer_pointer() for x in jax.tree.leaves(state)]
  assert len(pointers) == len(set(pointers))
  step = fused.make_train_step(plan, tx)
  state, metrics = step(state, helpers.random_batch())
  assert np.isfinite(float(metrics["loss"]))
