"""Loss primitives (docs/methods.md §1.5, §4.4, §5.3). Pure jnp functions, float32.

- `cross_entropy`, `accuracy`: softmax CE with integer labels, batch mean (§1.5).
- `bce_with_logits`: decoder BCE from pre-sigmoid logits (§1.5), optional PyTorch clamp.
- `supcon`: InfoPro's single-view supervised contrastive loss (§5.3; sign as in the code, Q22).
- `similarity_matrix`, `similarity_loss`: PredSim's similarity-matching loss (§4.4).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def cross_entropy(logits, labels):
  """Mean softmax CE. logits [N, K] float, labels [N] int -> scalar.

  L = -(1/N) Σ_i log softmax(logits_i)[y_i]   (docs/methods.md §1.5).
  """
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.mean(jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=-1))


def accuracy(logits, labels):
  """Fraction of argmax(logits [N, K]) == labels [N], a scalar in [0, 1]."""
  return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


DECODER_BCE = ("exact", "torch")   # `method.infopro.decoder_bce`: bce_with_logits' two forms


def bce_with_logits(logits, target, torch_clamp: bool = False):
  """Mean binary cross-entropy of sigmoid(logits) vs target in [0, 1] (docs/methods.md, decoder BCE).

  logits, target: same shape (e.g. [N, H, W, 3]); the mean runs over all elements.
  Default ("exact"): l = -[t*log(sigmoid(z)) + (1-t)*log(sigmoid(-z))] = softplus(z) - t*z, with
  dl/dz = sigmoid(z) - t.
  torch_clamp=True ("torch", the references' `nn.BCELoss()(sigmoid(z), t)`): p = sigmoid(z) in
  float32, l = -[t*max(log p, -100) + (1-t)*max(log(1-p), -100)], and PyTorch's backward
  dl/dz = (p - t) / max(p(1-p), 1e-12) * p(1-p). Where p(1-p) < 1e-12 (z below about -27.6)
  the gradient is attenuated by p(1-p)/1e-12; where p rounds to 1 (z above about 17) the loss
  is the clamped constant 100*(1-t) and the gradient is exactly 0.
  """
  x = logits.astype(jnp.float32)
  t = target.astype(jnp.float32)
  if torch_clamp:
    return jnp.mean(_torch_bce(x, t))
  return -jnp.mean(t * jax.nn.log_sigmoid(x) + (1.0 - t) * jax.nn.log_sigmoid(-x))


def _clamped_log(q):
  """max(log q, -100), with log 0 = -inf clamped to -100 as PyTorch's BCELoss does."""
  return jnp.where(q > 0, jnp.maximum(jnp.log(jnp.where(q > 0, q, 1.0)), -100.0), -100.0)


@jax.custom_vjp
def _torch_bce(z, t):
  """Element-wise PyTorch BCELoss(sigmoid(z), t), forward and backward as in `bce_with_logits`."""
  return _torch_bce_fwd(z, t)[0]


def _torch_bce_fwd(z, t):
  p = jax.nn.sigmoid(z)
  loss = -(t * _clamped_log(p) + (1.0 - t) * _clamped_log(1.0 - p))
  return loss, (p, t)


def _torch_bce_bwd(res, g):
  p, t = res
  slope = (1.0 - p) * p                                 # sigmoid's backward
  grad_p = (p - t) / jnp.maximum(slope, 1e-12)          # BCELoss's backward, EPSILON = 1e-12
  return g * grad_p * slope, jnp.zeros_like(t)


_torch_bce.defvjp(_torch_bce_fwd, _torch_bce_bwd)


def supcon(features, labels, temperature: float = 0.07, base_temperature: float = 0.07):
  """Single-view SupCon (docs/methods.md §5.3), as in InfoPro's code (quirk Q22: minus sign kept).

  features: [N, D], already L2-normalised; labels: [N] int.
  ℓ_i = −(τ/τ_b)·(1/max(|P(i)|,1))·Σ_{p∈P(i)} [z_i·z_p/τ − log Σ_{a≠i} exp(z_i·z_a/τ)],
  P(i) = {p ≠ i: y_p = y_i}. L = mean_i ℓ_i over all N anchors (no-positive anchors give 0).
  The (detached) row max is subtracted before exponentiating; the value does not change.
  """
  z = features.astype(jnp.float32)
  n = z.shape[0]
  logits = jnp.matmul(z, z.T, precision=jax.lax.Precision.HIGHEST) / temperature
  logits = logits - jax.lax.stop_gradient(jnp.max(logits, axis=1, keepdims=True))
  not_self = 1.0 - jnp.eye(n, dtype=jnp.float32)
  pos = (labels[:, None] == labels[None, :]).astype(jnp.float32) * not_self
  log_den = jnp.log(jnp.sum(jnp.exp(logits) * not_self, axis=1, keepdims=True))
  log_prob = logits - log_den
  mean_log_prob_pos = jnp.sum(pos * log_prob, axis=1) / jnp.maximum(jnp.sum(pos, axis=1), 1.0)
  return -(temperature / base_temperature) * jnp.mean(mean_log_prob_pos)


def _safe_sqrt(v):
  """sqrt with zero (not NaN) gradient at v == 0."""
  pos = v > 0
  return jnp.where(pos, jnp.sqrt(jnp.where(pos, v, 1.0)), 0.0)


def similarity_matrix(x):
  """PredSim similarity matrix S(X) (docs/methods.md §4.4). x: [N, H, W, C] or [N, ...] -> [N, N].

  1. If x is 4-D with C > 3 and H > 1: per-channel spatial std, unbiased (ddof=1) -> [N, C];
     otherwise flatten to [N, D].
  2. Subtract each row's mean. 3. Divide each row by (1e-8 + ||row||_2).
  4. R = X·Xᵀ clamped to [−1, 1].
  [decision] The std uses a safe sqrt: zero gradient (instead of NaN) for a constant channel.
  """
  x = x.astype(jnp.float32)
  n = x.shape[0]
  if x.ndim == 4 and x.shape[3] > 3 and x.shape[1] > 1:
    flat = x.reshape(n, -1, x.shape[3])  # [N, H*W, C]
    m = flat.shape[1]
    var = jnp.sum((flat - jnp.mean(flat, axis=1, keepdims=True)) ** 2, axis=1) / (m - 1)
    z = _safe_sqrt(var)
  else:
    z = x.reshape(n, -1)
  z = z - jnp.mean(z, axis=1, keepdims=True)
  z = z / (1e-8 + jnp.sqrt(jnp.sum(z * z, axis=1, keepdims=True)))
  return jnp.clip(jnp.matmul(z, z.T, precision=jax.lax.Precision.HIGHEST), -1.0, 1.0)


def similarity_loss(h, labels, num_classes: int):
  """PredSim sim loss (docs/methods.md §4.4): mean over N×N of (S(h) − S(onehot(y)))².

  h: [N, H, W, C] or [N, D]; labels: [N] int.
  """
  target = similarity_matrix(jax.nn.one_hot(labels, num_classes, dtype=jnp.float32))
  return jnp.mean((similarity_matrix(h) - target) ** 2)
