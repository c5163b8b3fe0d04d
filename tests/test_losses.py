"""Loss primitives and align-corners resize against independent NumPy loop implementations
(docs/methods.md §1.4, §1.5, §4.4, §5.3)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_local import losses
from jax_local.models.layers import resize_align_corners


def _rng(seed=0):
  return np.random.default_rng(seed)


# ---------------------------------------------------------------- CE / accuracy / BCE


def test_cross_entropy_and_accuracy():
  rng = _rng(1)
  logits = rng.normal(size=(6, 5)).astype(np.float32) * 3
  labels = np.array([0, 4, 2, 2, 1, 3])
  ref = 0.0
  for i in range(6):
    m = max(logits[i])
    lse = m + math.log(sum(math.exp(v - m) for v in logits[i]))
    ref += lse - logits[i, labels[i]]
  ref /= 6
  np.testing.assert_allclose(losses.cross_entropy(jnp.asarray(logits), jnp.asarray(labels)),
                             ref, rtol=1e-5)
  correct = sum(int(np.argmax(logits[i]) == labels[i]) for i in range(6))
  assert float(losses.accuracy(jnp.asarray(logits), jnp.asarray(labels))) == correct / 6


def _bce_numpy(x, t, clamp):
  out = []
  for xi, ti in zip(x.ravel(), t.ravel()):
    if clamp:  # PyTorch BCELoss on a float32 sigmoid, logs clamped at -100
      p = np.float32(1) / (np.float32(1) + np.exp(-np.float32(xi)))
      lp = max(math.log(p), -100.0) if p > 0 else -100.0
      l1p = max(math.log1p(-float(p)), -100.0) if p < 1 else -100.0
    else:
      lp = -math.log1p(math.exp(-xi)) if xi >= 0 else xi - math.log1p(math.exp(xi))
      l1p = -xi + lp
    out.append(-(ti * lp + (1 - ti) * l1p))
  return float(np.mean(out))


def test_bce_with_logits_both_modes():
  rng = _rng(2)
  x = (rng.normal(size=(2, 4, 4, 3)) * 4).astype(np.float32)
  t = rng.uniform(size=x.shape).astype(np.float32)
  for clamp in (False, True):
    np.testing.assert_allclose(losses.bce_with_logits(jnp.asarray(x), jnp.asarray(t), clamp),
                               _bce_numpy(x, t, clamp), rtol=1e-5)
  # Saturated logit: sigmoid(40) == 1 in float32, so PyTorch's log(1-p) is clamped at -100.
  xs = np.array([40.0, -3.0], np.float32)
  ts = np.array([0.0, 1.0], np.float32)
  stable = float(losses.bce_with_logits(jnp.asarray(xs), jnp.asarray(ts)))
  clamped = float(losses.bce_with_logits(jnp.asarray(xs), jnp.asarray(ts), torch_clamp=True))
  np.testing.assert_allclose(stable, _bce_numpy(xs, ts, False), rtol=1e-6)
  np.testing.assert_allclose(clamped, _bce_numpy(xs, ts, True), rtol=1e-6)
  np.testing.assert_allclose(stable, (40.0 + math.log1p(math.exp(3.0))) / 2, rtol=1e-6)
  assert abs(clamped - (100.0 + math.log1p(math.exp(3.0))) / 2) < 1e-4
  g = jax.grad(lambda z: losses.bce_with_logits(z, jnp.asarray(ts), torch_clamp=True))(
      jnp.asarray(xs))
  assert np.all(np.isfinite(g)) and float(g[0]) == 0.0  # PyTorch: no gradient when saturated


def _torch_closed_form(z, t):
  """PyTorch's BCELoss(sigmoid(z), t) in float32: loss and dloss/dz (docstring of
  `losses.bce_with_logits`), written with numpy."""
  z32 = np.float32(z)
  p = np.float32(1) / (np.float32(1) + np.exp(-z32, dtype=np.float32))
  with np.errstate(divide="ignore"):
    log_p = max(np.log(p), -100.0) if p > 0 else -100.0
    log_1mp = max(np.log(np.float32(1) - p), -100.0) if p < 1 else -100.0
  loss = -(t * log_p + (1 - t) * log_1mp)
  slope = float((np.float32(1) - p) * p)
  return loss, (float(p) - t) / max(slope, 1e-12) * slope


@pytest.mark.parametrize("z", [-35.0, -30.0, 16.0, 17.0, 20.0])
@pytest.mark.parametrize("t", [0.0, 0.3, 1.0])
def test_decoder_bce_exact_and_torch_closed_forms(z, t):
  """exact: softplus(z) - t*z and sigmoid(z) - t; torch: the clamped loss and PyTorch's
  attenuated / zero gradient, at the points where the two differ."""
  zz, tt = jnp.asarray([z], jnp.float32), jnp.asarray([t], jnp.float32)
  for torch_clamp in (False, True):
    loss, grad = jax.value_and_grad(lambda a: losses.bce_with_logits(a, tt, torch_clamp))(zz)
    if torch_clamp:
      want_loss, want_grad = _torch_closed_form(z, t)
    else:
      want_loss = math.log1p(math.exp(-abs(z))) + max(z, 0.0) - t * z
      want_grad = 1 / (1 + math.exp(-z)) - t
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(float(grad[0]), want_grad, rtol=1e-4, atol=1e-12)
  if z >= 17:   # sigmoid(z) == 1 in float32: the clamped constant, no gradient
    assert float(losses.bce_with_logits(zz, tt, True)) == pytest.approx(100 * (1 - t))
    assert float(jax.grad(lambda a: losses.bce_with_logits(a, tt, True))(zz)[0]) == 0.0
  if z <= -30 and t > 0:  # p(1-p) < 1e-12: attenuated by p(1-p)/1e-12 < 0.1
    exact = float(jax.grad(lambda a: losses.bce_with_logits(a, tt))(zz)[0])
    torch = float(jax.grad(lambda a: losses.bce_with_logits(a, tt, True))(zz)[0])
    assert abs(torch) < 0.1 * abs(exact)


def test_decoder_bce_option_reaches_every_decoder():
  """method.infopro.decoder_bce=torch sets the PyTorch BCE on the CIFAR and ImageNet InfoPro
  heads and HPFF's quadrant decoders."""
  from configs import common
  from jax_local.methods import infopro   # the InfoPro heads of either family
  from jax_local.plugins import hpff
  c = common.get_config("infopro", "hpff")
  c.method.infopro.loss_mode = "cross_entropy"  # the ImageNet heads' only mode
  for kind, want in (("exact", False), ("torch", True)):
    c.method.infopro.decoder_bce = kind
    assert infopro.infopro_head(c.method.infopro, 10, 1.0, 1.0).bce_torch_clamp is want
    c.method.infopro.head_family = "imagenet_hpff"
    assert infopro.infopro_head(c.method.infopro, 10, 1.0, 1.0).bce_torch_clamp is want
    del c.method.infopro["head_family"]
    c.method.pff.mode = "code_quadrant_decoders"
    head = hpff.cascade_head(c.method, infopro.SPEC, 10, (1.0, 1.0))
    assert head.parts[0].bce_torch_clamp is want
  c.method.infopro.decoder_bce = "pytorch"
  with pytest.raises(ValueError, match="decoder_bce='pytorch'.*exact, torch"):
    infopro.infopro_head(c.method.infopro, 10, 1.0, 1.0)


# ---------------------------------------------------------------- SupCon (§5.3)


def _supcon_numpy(z, y, tau, base):
  n = len(y)
  total = 0.0
  for i in range(n):
    den = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(n) if a != i)
    pos = [p for p in range(n) if p != i and y[p] == y[i]]
    s = sum(float(z[i] @ z[p]) / tau - math.log(den) for p in pos)
    total += -(tau / base) * s / max(len(pos), 1)
  return total / n


def test_supcon_bruteforce_with_singleton_class():
  rng = _rng(3)
  z = rng.normal(size=(8, 5))
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  y = np.array([0, 0, 1, 1, 1, 2, 3, 3])  # class 2 has a single sample
  for tau, base in ((0.07, 0.07), (0.5, 0.07)):
    got = losses.supcon(jnp.asarray(z, jnp.float32), jnp.asarray(y), tau, base)
    np.testing.assert_allclose(got, _supcon_numpy(z, y, tau, base), rtol=1e-4)
  # the singleton's anchor term is 0 but it still counts in the mean over N
  y_all_single = np.arange(8)
  assert float(losses.supcon(jnp.asarray(z, jnp.float32), jnp.asarray(y_all_single))) == 0.0


# ---------------------------------------------------------------- PredSim similarity (§4.4)


def _sim_matrix_numpy(x_nhwc):
  x = np.asarray(x_nhwc, np.float64)
  n = x.shape[0]
  if x.ndim == 4 and x.shape[3] > 3 and x.shape[1] > 1:
    h, w, c = x.shape[1:]
    rows = np.zeros((n, c))
    for i in range(n):
      for ch in range(c):
        vals = [x[i, a, b, ch] for a in range(h) for b in range(w)]
        mu = sum(vals) / len(vals)
        rows[i, ch] = math.sqrt(sum((v - mu) ** 2 for v in vals) / (len(vals) - 1))
  else:
    rows = x.reshape(n, -1)
  out = np.zeros((n, n))
  for i in range(n):
    for j in range(n):
      a = rows[i] - rows[i].mean()
      b = rows[j] - rows[j].mean()
      a = a / (1e-8 + math.sqrt(float(a @ a)))
      b = b / (1e-8 + math.sqrt(float(b @ b)))
      out[i, j] = min(1.0, max(-1.0, float(a @ b)))
  return out


def test_similarity_matrix_and_loss():
  rng = _rng(4)
  x4 = rng.normal(size=(5, 3, 4, 6)).astype(np.float32)  # C > 3, H > 1: ddof=1 channel std
  x3 = rng.normal(size=(5, 3, 4, 3)).astype(np.float32)  # C == 3: flatten
  x1 = rng.normal(size=(5, 1, 4, 6)).astype(np.float32)  # H == 1: flatten
  x2 = rng.normal(size=(5, 7)).astype(np.float32)
  for x in (x4, x3, x1, x2):
    np.testing.assert_allclose(losses.similarity_matrix(jnp.asarray(x)), _sim_matrix_numpy(x),
                               atol=2e-6)
  # (S is invariant to a common rescaling of a row, so ddof=1 vs 0 only matters through the
  # 1e-8 in the normaliser; the reference above uses ddof=1 explicitly.)
  y = np.array([0, 1, 1, 2, 0])
  onehot = np.eye(4)[y]
  ref = float(np.mean((_sim_matrix_numpy(x4) - _sim_matrix_numpy(onehot)) ** 2))
  np.testing.assert_allclose(losses.similarity_loss(jnp.asarray(x4), jnp.asarray(y), 4), ref,
                             rtol=1e-5)


# ---------------------------------------------------------------- align-corners resize (§1.4)


def _resize_numpy(x, oh, ow):
  n, h, w, c = x.shape
  out = np.zeros((n, oh, ow, c))

  def src(o, n_in, n_out):
    s = 0.0 if n_out == 1 else o * (n_in - 1) / (n_out - 1)
    i0 = min(int(math.floor(s)), n_in - 1)
    return i0, min(i0 + 1, n_in - 1), s - i0

  for a in range(oh):
    y0, y1, fy = src(a, h, oh)
    for b in range(ow):
      x0, x1, fx = src(b, w, ow)
      out[:, a, b] = ((1 - fy) * ((1 - fx) * x[:, y0, x0] + fx * x[:, y0, x1])
                      + fy * ((1 - fx) * x[:, y1, x0] + fx * x[:, y1, x1]))
  return out


def test_resize_2_to_3():
  a, b, c, d = 1.0, 5.0, -2.0, 4.0
  x = jnp.asarray([[a, b], [c, d]], jnp.float32)[None, :, :, None]
  y = np.asarray(resize_align_corners(x, (3, 3)))[0, :, :, 0]
  np.testing.assert_allclose(y[0], [a, (a + b) / 2, b])
  np.testing.assert_allclose(y[2], [c, (c + d) / 2, d])
  np.testing.assert_allclose(y[:, 0], [a, (a + c) / 2, c])


def test_resize_8_to_32_and_down_and_identity():
  rng = _rng(5)
  x = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
  np.testing.assert_allclose(resize_align_corners(jnp.asarray(x), 32), _resize_numpy(x, 32, 32),
                             atol=1e-5)
  # hand value: output 1 of 8->32 reads src = 7/31
  s = 7 / 31
  np.testing.assert_allclose(np.asarray(resize_align_corners(jnp.asarray(x), (32, 8)))[:, 1],
                             (1 - s) * x[:, 0] + s * x[:, 1], atol=1e-6)
  big = rng.normal(size=(1, 32, 24, 2)).astype(np.float32)
  np.testing.assert_allclose(resize_align_corners(jnp.asarray(big), (8, 5)),
                             _resize_numpy(big, 8, 5), atol=1e-5)
  np.testing.assert_allclose(resize_align_corners(jnp.asarray(x), (1, 1)),
                             _resize_numpy(x, 1, 1), atol=1e-6)
  np.testing.assert_array_equal(resize_align_corners(jnp.asarray(x), (8, 8)), x)


def test_resize_gradient_is_transpose():
  rng = _rng(6)
  x = jnp.asarray(rng.normal(size=(1, 4, 4, 1)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(1, 7, 7, 1)), jnp.float32)
  g = jax.grad(lambda z: jnp.sum(resize_align_corners(z, 7) * w))(x)
  eps = 1e-2
  e = np.zeros((1, 4, 4, 1), np.float32)
  e[0, 1, 2, 0] = eps
  f = lambda z: float(jnp.sum(resize_align_corners(z, 7) * w))
  fd = (f(x + e) - f(x - e)) / (2 * eps)
  np.testing.assert_allclose(g[0, 1, 2, 0], fd, rtol=1e-3)
