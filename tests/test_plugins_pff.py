"""Patch Feature Fusion (docs/methods.md §7.2): tiling, vmap == scan == unrolled, scan's memory."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_local import heads as H
from jax_local.plugins import pff


@pytest.mark.parametrize("shape,grid", [((2, 8, 8, 3), (2, 2)), ((2, 7, 7, 1), (2, 2)),
                                        ((1, 6, 5, 2), (2, 1)), ((1, 9, 6, 1), (3, 2))])
def test_patches_tile_the_map_exactly(shape, grid):
  x = jnp.arange(np.prod(shape), dtype=jnp.float32).reshape(shape)
  patches = pff.split_patches(x, grid)
  assert len(patches) == grid[0] * grid[1]
  rows = [jnp.concatenate(patches[r * grid[1]:(r + 1) * grid[1]], axis=2) for r in range(grid[0])]
  np.testing.assert_array_equal(jnp.concatenate(rows, axis=1), x)
  assert sum(p.shape[1] * p.shape[2] for p in patches) == shape[1] * shape[2]
  if shape[1] == 8:  # even grid: equal patches, and the reference's [:H//2], [H//2:] quadrants
    assert {p.shape for p in patches} == {(2, 4, 4, 3)}
    np.testing.assert_array_equal(patches[1], x[:, :4, 4:])


def _batch(n, hw, c=3, seed=0):
  k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
  img = jax.random.uniform(k1, (n, hw, hw, c))
  return {"image": img, "image01": img, "label": jax.random.randint(k2, (n,), 0, 4)}


def _head(loop, grid=(2, 2)):
  inner = H.InfoProHead(lambda_rec=1.0, lambda_cls=1.0, classifier="1c2f",
                        loss_mode="cross_entropy", num_classes=4)
  return pff.PatchHead(inner, grid, loop)


def _loss_fn(head):
  def f(params, stats, h, batch):
    (loss, metrics), upd = head.apply({"params": params, "batch_stats": stats}, h, batch, True,
                                      mutable=["batch_stats"])
    return loss, (metrics, upd["batch_stats"])
  return f


def test_vmap_scan_unrolled_same_loss_grads_and_stats():
  batch = _batch(8, 16)
  h = jax.random.normal(jax.random.PRNGKey(3), (8, 8, 8, 16))
  v = jax.jit(lambda h, b: _head("vmap").init(jax.random.PRNGKey(1), h, b, True))(h, batch)
  assert set(v["params"]) == {"patch_net"}
  out = {}
  for loop in pff.LOOPS:
    f = jax.jit(jax.value_and_grad(_loss_fn(_head(loop)), (0, 2), has_aux=True))
    args = (v["params"], v["batch_stats"], h, batch)
    (loss, (metrics, stats)), grads = f(*args)
    out[loop] = (loss, metrics, stats, grads)
  ref = out["vmap"]
  assert float(ref[0]) > 0 and set(ref[1]) >= {"loss", "bce", "ce", "accuracy"}
  for loop in ("scan", "unrolled"):
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(out[loop])):
      np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)


def test_uneven_patches_need_unrolled():
  batch = _batch(2, 14, 1)
  h = jnp.ones((2, 7, 7, 16))
  v = jax.eval_shape(lambda: _head("unrolled").init(jax.random.PRNGKey(0), h, batch, True))
  jax.eval_shape(_loss_fn(_head("unrolled")), v["params"], v["batch_stats"], h, batch)
  with pytest.raises(ValueError, match="patch_loop='unrolled'"):
    jax.eval_shape(_loss_fn(_head("scan")), v["params"], v["batch_stats"], h, batch)


def test_quadrant_decoders_own_weights_summed_bce():
  batch = _batch(2, 8)
  h = jax.random.normal(jax.random.PRNGKey(2), (2, 4, 4, 16))
  head = pff.QuadrantDecoderHead(lambda_rec=2.0)
  v = jax.jit(lambda h, b: head.init(jax.random.PRNGKey(0), h, b, True))(h, batch)
  assert sorted(v["params"]) == [f"decoder_q{q}" for q in range(4)]
  apply = jax.jit(lambda v, h, b: head.apply(v, h, b, True, mutable=["batch_stats"]))
  (loss, m), _ = apply(v, h, batch)

  def by_hand(v, h, target):
    bces = []
    pairs = zip(pff.split_patches(h, (2, 2)), pff.split_patches(target, (2, 2)))
    for q, (hq, tq) in enumerate(pairs):
      dv = {k: v[k][f"decoder_q{q}"] for k in ("params", "batch_stats")}
      z, _ = H.Decoder().apply(dv, hq, (4, 4), True, mutable=["batch_stats"])
      bces.append(jnp.mean(jnp.maximum(z, 0) - z * tq + jnp.log1p(jnp.exp(-jnp.abs(z)))))
    return bces

  bces = jax.jit(by_hand)(v, h, batch["image01"])
  np.testing.assert_allclose(m["bce"], sum(bces), rtol=1e-5)
  np.testing.assert_allclose(loss, 2.0 * sum(bces), rtol=1e-5)


@pytest.mark.full_optimisation
def test_scan_compiles_to_less_temp_memory_than_vmap():
  """Compile-only, CIFAR stage-1 size: batch 256, 32x32x16 features, 2x2 patches, the InfoPro
  decoder + 2c2f classifier as the shared patch net."""
  batch = jax.eval_shape(lambda: _batch(256, 32))
  h = jax.ShapeDtypeStruct((256, 32, 32, 16), jnp.float32)
  inner = H.InfoProHead(1.0, 1.0, classifier="2c2f", loss_mode="cross_entropy", num_classes=10)
  v = jax.eval_shape(lambda h, b: pff.PatchHead(inner, (2, 2), "vmap").init(
      jax.random.PRNGKey(0), h, b, True), h, batch)
  temp = {}
  for loop in ("vmap", "scan"):
    f = _loss_fn(pff.PatchHead(inner, (2, 2), loop))
    g = jax.jit(jax.grad(lambda *a: f(*a)[0], argnums=(0, 2)))
    compiled = g.lower(v["params"], v["batch_stats"], h, batch).compile()
    temp[loop] = compiled.memory_analysis().temp_size_in_bytes
  assert temp["scan"] < 0.75 * temp["vmap"], temp


def test_size_dependent_head_on_unequal_patches_says_what_to_do():
  """PredSim's prediction head flattens a pooled map: on a 7x7 map the 2x2 grid gives patches
  of 4x4 ... 3x3 whose pooled sizes differ (C=64, target 512: 512 vs 384 inputs), so one
  shared head cannot serve them; the error names the cause and the two ways out."""
  head = pff.PatchHead(H.PredSimHead(num_classes=10), (2, 2), "unrolled")
  h = jnp.ones((4, 7, 7, 64))
  with pytest.raises(ValueError, match=r"unequal patches .*pff.grid.*pff.mode='off'"):
    head.init(jax.random.PRNGKey(0), h, _batch(4, 28), train=True)
