"""The optimizer part by part (jax_local/part_optimizer.py) against the torch SGD rule per array,
with an EMA copy frozen inside a head."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from configs import common
from jax_local import ema, optim, part_optimizer


def _tree(rng):
  a = lambda *shape: rng.normal(size=shape).astype(np.float32)
  return {"backbone": {"b0": {"k": a(3, 2)}, "b1": {"k": a(3, 2), "b": a(2)}},
          "heads": {"h0": {"w": a(2, 4), "ema": {"k": a(3, 2)}}, "h1": {"w": a(2, 4)},
                    "empty": {}}}


def test_sgd_per_part_is_the_torch_rule_and_leaves_the_copy_alone():
  cfg = common.get_config().optim
  cfg.lr, cfg.weight_decay, cfg.schedule = 0.5, 1e-2, "cosine"
  epochs, steps_per_epoch, mu, wd = 4, 1, 0.9, 1e-2
  pairs = (ema.EmaPair("h0", ("ema",), "b0", 0.9),)
  tx = part_optimizer.PartOptimizer(optim.make_optimizer(cfg, epochs, steps_per_epoch), pairs)
  rng = np.random.default_rng(0)
  params = jax.tree.map(jnp.asarray, _tree(rng))
  state = tx.init(params)
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
  assert not [p for p in paths if "'ema'" in p] and [p for p in paths if "'h0'" in p]
  assert tx.part_tx(("heads", "h1")) is tx.part_tx(("backbone", "b0")) is tx.tx
  assert tx.part_tx(("heads", "h0")) is not tx.tx

  ref = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
  bufs = jax.tree.map(lambda _: None, ref)
  update = jax.jit(tx.update)
  for t in range(3):
    grads = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), ref)
    lr = optim.lr_for_epoch(cfg, t // steps_per_epoch, epochs)
    for path, p in jax.tree_util.tree_flatten_with_path(ref)[0]:
      if path[:2] == (jax.tree_util.DictKey("heads"), jax.tree_util.DictKey("h0")) and \
          path[2] == jax.tree_util.DictKey("ema"):
        continue   # frozen: no update
      g = np.asarray(_at(grads, path), np.float64) + wd * p   # torch.optim.SGD, nesterov
      buf = g if _at(bufs, path) is None else mu * _at(bufs, path) + g
      _put(bufs, path, buf)
      _put(ref, path, p - lr * (g + mu * buf))
    updates, state = update(grads, state, params)
    params = optax.apply_updates(params, updates)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6),
                 jax.device_get(params), ref)
  np.testing.assert_array_equal(params["heads"]["h0"]["ema"]["k"], _tree(
      np.random.default_rng(0))["heads"]["h0"]["ema"]["k"])


def _at(tree, path):
  for k in path:
    tree = tree[k.key]
  return tree


def _put(tree, path, value):
  for k in path[:-1]:
    tree = tree[k.key]
  tree[path[-1].key] = value
