"""Auxiliary heads (docs/methods.md §1.3, §4.1-4.4, §5.1): shapes, init, losses, gradients."""
import math

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_local import losses
from jax_local.heads import (AuxClassifier, ClassifierHead, DGLHead, InfoProHead, LogitsCE,
                             PredSimHead, avg_pool_include_pad, infopro_lambdas, predsim_pool)
from jax_local.models.layers import Conv

N = 8



def _batch(seed=0, hw=32, classes=10):
  rng = np.random.default_rng(seed)
  img01 = rng.uniform(size=(N, hw, hw, 3)).astype(np.float32)
  return {"image": jnp.asarray((img01 - 0.5) / 0.25), "image01": jnp.asarray(img01),
          "label": jnp.asarray(np.array([0, 0, 1, 1, 1, 2, 3, 3]) % classes, jnp.int32)}


def _feat(shape=(N, 8, 8, 16), seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _run(head, h, batch):
  """init + one train-mode apply + grad wrt the input; returns (variables, loss, metrics, g)."""
  variables = jax.jit(head.init, static_argnums=3)(jax.random.PRNGKey(0), h, batch, True)

  def f(x):
    (loss, metrics), _ = head.apply(variables, x, batch, True, mutable=["batch_stats"])
    return loss, metrics

  (loss, metrics), g = jax.jit(jax.value_and_grad(f, has_aux=True))(h)
  return variables, loss, metrics, g


def _check(loss, metrics, g, keys):
  assert np.isfinite(float(loss))
  assert set(keys) <= set(metrics), (keys, metrics.keys())
  for k, v in metrics.items():
    assert v.shape == () and v.dtype == jnp.float32 and np.isfinite(float(v)), k
  np.testing.assert_allclose(metrics["loss"], loss)
  assert np.all(np.isfinite(g)) and float(jnp.abs(g).sum()) > 0
  if "accuracy" in metrics:
    assert 0.0 <= float(metrics["accuracy"]) <= 1.0


def _abstract_init(module, *args):
  """Variable shapes without running anything (jax.eval_shape of init)."""
  return jax.eval_shape(lambda k: module.init(k, *args), jax.random.PRNGKey(0))


def _shapes(variables):
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(variables["params"]), sep="/")
  return {k: v.shape for k, v in flat.items()}


def _kernel_shapes(variables):
  return sorted(s for k, s in _shapes(variables).items() if k.endswith("kernel"))


# ---------------------------------------------------------------- §1.3 init


def test_conv_he_fan_out_std_and_linear_default():
  x = jnp.zeros((1, 4, 4, 64))
  k = Conv(256, 3).init(jax.random.PRNGKey(0), x)["params"]["Conv_0"]["kernel"]
  assert k.shape == (3, 3, 64, 256)
  np.testing.assert_allclose(float(jnp.std(k)), math.sqrt(2 / (3 * 3 * 256)), rtol=0.03)


# ---------------------------------------------------------------- InfoPro (§4.1, §4.2, §5.1)


@pytest.mark.parametrize("c,conv_a", [(16, (3, 3, 16, 32)), (32, (3, 3, 32, 64)),
                                      (64, (3, 3, 64, 64))])
def test_aux_classifier_param_shapes(c, conv_a):
  h = _feat((2, 8, 8, c))
  w = conv_a[-1]
  expect = {
      "0c1f": [(c, 7)],
      "0c2f": [(c, 128), (128, 7)],
      "1c1f": [conv_a, (w, 7)],
      "1c2f": [conv_a, (w, 128), (128, 7)],
      "1c3f": [conv_a, (w, 128), (128, 128), (128, 7)],
      "2c2f": [conv_a, (3, 3, w, w), (w, 128), (128, 7)],
  }
  for cfg, kernels in expect.items():
    m = AuxClassifier(cfg, 7)
    v = _abstract_init(m, h, True)
    assert _kernel_shapes(v) == sorted(kernels), cfg
    out = jax.eval_shape(lambda v: m.apply(v, h, True, mutable=["batch_stats"])[0], v)
    assert out.shape == (2, 7)
    conv_biases = [k for k in _shapes(v) if k.startswith("Conv") and k.endswith("bias")]
    assert not conv_biases, cfg


def test_aux_classifier_conv_a_stride():
  """conv_a: stride 2 for C in {16, 32}, stride 1 for C = 64 (§4.2); 2c2f's second conv s1."""
  for c, hw_out in ((16, 4), (32, 4), (64, 8)):
    h = _feat((2, 8, 8, c))
    m = AuxClassifier("2c2f", 5)
    v = m.init(jax.random.PRNGKey(0), h, True)
    inter = m.apply(v, h, True, mutable=["batch_stats", "intermediates"],
                    capture_intermediates=lambda mdl, _: isinstance(mdl, flax.linen.Conv))[1]
    leaves = jax.tree_util.tree_leaves(inter["intermediates"])
    shapes = [x.shape for x in leaves]
    assert shapes and all(s[1] == hw_out for s in shapes), (c, shapes)


@pytest.mark.parametrize("mode", ["contrast", "cross_entropy"])
def test_infopro_head_runs(mode):
  h, batch = _feat(), _batch()
  head = InfoProHead(lambda_rec=5.0, lambda_cls=1.0, classifier="1c2f", loss_mode=mode,
                     num_classes=10)
  v, loss, metrics, g = _run(head, h, batch)
  keys = ["loss", "bce"] + (["supcon"] if mode == "contrast" else ["ce", "accuracy"])
  _check(loss, metrics, g, keys)
  if mode == "contrast":
    assert "accuracy" not in metrics
    assert _shapes(v)["classifier/Dense_1/Dense_0/kernel"] == (128, 128)
  else:
    assert _shapes(v)["classifier/Dense_1/Dense_0/kernel"] == (128, 10)
  comp = metrics["supcon"] if mode == "contrast" else metrics["ce"]
  np.testing.assert_allclose(loss, 5.0 * metrics["bce"] + comp, rtol=1e-5)
  # decoder: conv3x3 16->12 (bias) -> BN -> conv3x3 12->3 (bias)
  s = _shapes(v)
  assert s["decoder/Conv_0/Conv_0/kernel"] == (3, 3, 16, 12)
  assert s["decoder/Conv_0/Conv_0/bias"] == (12,)
  assert s["decoder/Conv_1/Conv_0/kernel"] == (3, 3, 12, 3)
  assert s["decoder/Conv_1/Conv_0/bias"] == (3,)


def test_infopro_head_skips_unused_parts():
  h, batch = _feat(), _batch()
  v, loss, metrics, g = _run(InfoProHead(0.0, 2.0), h, batch)
  assert not any(k.startswith("decoder") for k in _shapes(v)) and "bce" not in metrics
  _check(loss, metrics, g, ["loss", "supcon"])
  np.testing.assert_allclose(loss, 2.0 * metrics["supcon"], rtol=1e-6)
  v, loss, metrics, g = _run(InfoProHead(5.0, 0.0), h, batch)
  assert not any(k.startswith("classifier") for k in _shapes(v)) and "supcon" not in metrics
  _check(loss, metrics, g, ["loss", "bce"])
  # the torch-clamped BCE agrees with the stable one away from saturation
  _, loss_c, _, _ = _run(InfoProHead(5.0, 0.0, bce_torch_clamp=True), h, batch)
  np.testing.assert_allclose(loss_c, loss, rtol=1e-5)


def test_classifier_head_greedy_sl_and_logits_ce():
  h, batch = _feat(), _batch()
  v, loss, metrics, g = _run(ClassifierHead("0c1f", 10), h, batch)
  _check(loss, metrics, g, ["loss", "ce", "accuracy"])
  assert _kernel_shapes(v) == [(16, 10)]
  logits = _feat((N, 10), seed=3)
  _, loss, metrics, g = _run(LogitsCE(), logits, batch)
  _check(loss, metrics, g, ["loss", "ce", "accuracy"])
  np.testing.assert_allclose(loss, losses.cross_entropy(logits, batch["label"]), rtol=1e-6)


def test_infopro_lambdas_derived_rows():
  r32_k8 = [infopro_lambdas(j, 8, 5, 0, 0, 2) for j in range(7)]
  np.testing.assert_allclose(r32_k8, [(5, 0), (4.1667, .3333), (3.3333, .6667), (2.5, 1),
                                      (1.6667, 1.3333), (.8333, 1.6667), (0, 2)], atol=1e-4)
  np.testing.assert_allclose([infopro_lambdas(j, 4, 6, 0, 1, 2) for j in range(3)],
                             [(6, 0), (3.5, 1), (1, 2)])
  k16 = [infopro_lambdas(j, 16, 5, 0.05, 0.2, 0.5) for j in range(15)]
  np.testing.assert_allclose(k16[0], (5, .05))
  np.testing.assert_allclose(k16[1], (4.66, .08), atol=5e-3)
  np.testing.assert_allclose(k16[7], (2.6, .275))
  np.testing.assert_allclose(k16[14], (0.2, 0.5))
  r110 = [infopro_lambdas(j, 16, 5, 0, 0.5, 1) for j in (0, 7, 14)]
  np.testing.assert_allclose(r110, [(5, 0), (2.75, 0.5), (0.5, 1)])
  assert infopro_lambdas(0, 2, 5, 1, 0, 0) == (5, 1)  # K=2: r = 0
  with pytest.raises(ValueError):
    infopro_lambdas(7, 8, 5, 0, 0, 2)


# ---------------------------------------------------------------- DGL (§4.3)


@pytest.mark.parametrize("kind", ["mlp", "mlp-sr", "cnn", "final", "auglocal", "manpp"])
def test_dgl_heads_run(kind):
  h, batch = _feat(), _batch()
  _, loss, metrics, g = _run(DGLHead(kind, 10), h, batch)
  _check(loss, metrics, g, ["loss", "ce", "accuracy"])


def test_dgl_head_shapes():
  h = _feat()  # C=16 at 8x8
  batch = _batch()
  ks = lambda head, x=h: _kernel_shapes(_abstract_init(head, x, batch, True))
  # mlp: pool to 2x2 (ceil(8/4)), then pool 2x2, flatten 64, 3 x Linear(64), Linear(->10)
  assert ks(DGLHead("mlp")) == sorted([(64, 64)] * 3 + [(64, 10)])
  assert ks(DGLHead("mlp-sr")) == sorted([(1, 1, 16, 16)] * 3 + [(64, 64)] * 3 + [(64, 10)])
  assert ks(DGLHead("cnn")) == sorted([(3, 3, 16, 16)] * 2 + [(64, 10)])
  assert ks(DGLHead("final")) == sorted([(64, 64)] * 2 + [(64, 10)])
  # auglocal: S=8 -> pool 2 -> m = 2 -> F = 64; Linear(F,F) without bias
  v = _abstract_init(DGLHead("auglocal"), h, batch, True)
  assert _kernel_shapes(v) == sorted([(1, 1, 16, 16)] * 3 + [(64, 64)] * 2 + [(64, 10)])
  dense_biases = [k for k in _shapes(v) if k.endswith("bias") and "BatchNorm" not in k]
  assert len(dense_biases) == 1  # only the output Linear has a bias
  # S=4 (e.g. C64 at 4px): ceil(4/4)=1 -> m = 1 -> F = C
  assert ks(DGLHead("auglocal"), _feat((N, 4, 4, 64)))[-1] == (64, 64)
  assert ks(DGLHead("manpp")) == sorted([(1, 1, 16, 128)] + [(1, 1, 128, 128)] * 2
                                        + [(128, 512)] + [(512, 512)] * 2 + [(512, 10)])


def test_dgl_adaptive_pooling_odd_sizes():
  # 10x10 input: mlp pools to 3x3 then to 2x2 (overlapping adaptive windows)
  batch = _batch()
  for kind, hw in (("mlp", 10), ("manpp", 12), ("auglocal", 6)):
    _, loss, metrics, g = _run(DGLHead(kind), _feat((N, hw, hw, 16)), batch)
    _check(loss, metrics, g, ["loss", "ce", "accuracy"])


# ---------------------------------------------------------------- PredSim (§4.4)


def test_predsim_pool_table():
  rows = [  # (C, dim, target) -> kernel, pad, out
      ((16, 32, 512), (8, 4), (0, 0), (4, 8)),
      ((32, 16, 512), (4, 4), (0, 0), (4, 4)),
      ((64, 8, 512), (4, 2), (0, 0), (2, 4)),
      ((16, 96, 512), (32, 16), (0, 0), (3, 6)),
      ((32, 48, 512), (16, 16), (0, 0), (3, 3)),
      ((64, 24, 512), (16, 8), (8, 0), (2, 3)),
      ((128, 32, 2048), (8, 8), (0, 0), (4, 4)),
      ((256, 32, 2048), (16, 8), (0, 0), (2, 4)),
      ((256, 16, 2048), (8, 4), (0, 0), (2, 4)),
      ((512, 16, 2048), (8, 8), (0, 0), (2, 2)),
      ((512, 8, 2048), (4, 4), (0, 0), (2, 2)),
      ((512, 4, 2048), (2, 2), (0, 0), (2, 2)),
      ((128, 28, 1024), (16, 8), (8, 4), (2, 4)),
      ((256, 28, 1024), (16, 16), (8, 8), (2, 2)),
      ((256, 14, 1024), (8, 8), (4, 4), (2, 2)),
      ((512, 14, 1024), (16, 8), (8, 4), (1, 2)),
      ((512, 7, 1024), (8, 4), (4, 2), (1, 2)),
      ((512, 3, 1024), (4, 2), (2, 1), (1, 2)),
  ]
  for args, k, p, o in rows:
    assert predsim_pool(*args) == (k, p, o), args
  assert predsim_pool(4, 4, 512) == ((1, 1), (0, 0), (4, 4))  # already small: no pooling


def test_avg_pool_include_pad_vs_loop():
  x = np.random.default_rng(7).normal(size=(2, 7, 7, 3)).astype(np.float32)
  (kh, kw), (ph, pw) = (4, 2), (2, 1)
  got = np.asarray(avg_pool_include_pad(jnp.asarray(x), (kh, kw), (ph, pw)))
  oh, ow = (7 + 2 * ph - kh) // kh + 1, (7 + 2 * pw - kw) // kw + 1
  assert got.shape == (2, oh, ow, 3) == (2, 2, 4, 3)
  ref = np.zeros((2, oh, ow, 3))
  for i in range(oh):
    for j in range(ow):
      acc = np.zeros((2, 3))
      for a in range(kh):
        for b in range(kw):
          r, c = i * kh + a - ph, j * kw + b - pw
          if 0 <= r < 7 and 0 <= c < 7:
            acc += x[:, r, c]
      ref[:, i, j] = acc / (kh * kw)  # count_include_pad=True
  np.testing.assert_allclose(got, ref, atol=1e-6)


def test_predsim_head():
  h, batch = _feat(), _batch()  # C16@8, target 512: k(2,1)->4x8 = 512
  v, loss, metrics, g = _run(PredSimHead(10), h, batch)
  _check(loss, metrics, g, ["loss", "sim", "ce", "accuracy"])
  np.testing.assert_allclose(loss, 0.01 * metrics["ce"] + 0.99 * metrics["sim"], rtol=1e-5)
  p = v["params"]
  assert p["pred"]["Dense_0"]["kernel"].shape == (4 * 8 * 16, 10)
  assert float(jnp.abs(p["pred"]["Dense_0"]["kernel"]).sum()) == 0.0  # zero-init (§1.3)
  assert p["sim_conv"]["Conv_0"]["kernel"].shape == (3, 3, 16, 16)
  assert "bias" not in p["sim_conv"]["Conv_0"]
  v2 = PredSimHead(10, zero_init_pred=False).init(jax.random.PRNGKey(0), h, batch, True)
  assert float(jnp.abs(v2["params"]["pred"]["Dense_0"]["kernel"]).sum()) > 0
  # beta = 1: sim only, no pred params; linear-block input (2-D)
  v, loss, metrics, g = _run(PredSimHead(10, beta=1.0), h, batch)
  assert "pred" not in v["params"] and "ce" not in metrics
  _check(loss, metrics, g, ["loss", "sim"])
  _, loss, metrics, g = _run(PredSimHead(10, zero_init_pred=False), _feat((N, 24)), batch)
  _check(loss, metrics, g, ["loss", "sim", "ce", "accuracy"])
