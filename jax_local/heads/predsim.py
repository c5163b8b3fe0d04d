"""PredSim local heads: similarity matching + pooled linear prediction (docs/methods.md §4.4)."""
from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jax_local import losses
from jax_local.models.layers import Conv, Dense


def predsim_pool(channels: int, dim: int | Sequence[int], target: int):
  """PredSim pred-branch AvgPool geometry (docs/methods.md §4.4 kernel selection).

  dim: spatial size (int for square, or (H, W)); target: max flattened size C·d_h·d_w.
  Start k_h = k_w = 1; while C·d_h·d_w > target and k_h < dim_h: k_h *= 2, d_h = ⌈dim_h/k_h⌉;
  if still > target: k_w *= 2, d_w = ⌈dim_w/k_w⌉. pad = (k·(⌈dim/k⌉ − ⌊dim/k⌋))//2 per axis.
  Returns ((k_h, k_w), (p_h, p_w), (o_h, o_w)) with o = ⌊(dim + 2p − k)/k⌋ + 1, the output
  size of AvgPool(kernel k, stride k, pad p). No pooling gives k = 1, p = 0, o = dim.
  """
  dh, dw = (dim, dim) if isinstance(dim, int) else tuple(dim)
  kh = kw = 1
  oh, ow = dh, dw
  while channels * oh * ow > target and kh < dh:
    kh *= 2
    oh = math.ceil(dh / kh)
    if channels * oh * ow > target:
      kw *= 2
      ow = math.ceil(dw / kw)
  ph = (kh * (math.ceil(dh / kh) - dh // kh)) // 2
  pw = (kw * (math.ceil(dw / kw) - dw // kw)) // 2
  out = ((dh + 2 * ph - kh) // kh + 1, (dw + 2 * pw - kw) // kw + 1)
  return (kh, kw), (ph, pw), out


def avg_pool_include_pad(x, kernel: Sequence[int], pad: Sequence[int]):
  """AvgPool2d(kernel, stride=kernel, padding=pad, count_include_pad=True, ceil_mode=False).

  x: [N,H,W,C] -> [N, o_h, o_w, C], o = ⌊(dim + 2p − k)/k⌋ + 1. Zero padding is averaged in
  (divisor always k_h·k_w).
  """
  (kh, kw), (ph, pw) = kernel, pad
  if (kh, kw) == (1, 1):
    return x
  n, h, w, c = x.shape
  oh, ow = (h + 2 * ph - kh) // kh + 1, (w + 2 * pw - kw) // kw + 1
  x = jnp.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))[:, :oh * kh, :ow * kw]
  return x.reshape(n, oh, kh, ow, kw, c).mean(axis=(2, 4))


class PredSimHead(nn.Module):
  """PredSim local loss L = (1−β)·CE(pred) + β·L_sim (docs/methods.md §4.4).

  h: [N,H,W,C] (conv block) or [N,D] (linear block).
  sim branch: conv3x3(C→C, pad 1, no bias) (Linear(D→D, no bias) for 2-D h), then
    L_sim = mean_{N×N} (S(h_sim) − S(onehot(y)))² (`losses.similarity_loss`).
  pred branch: AvgPool(k, stride k, pad p, count_include_pad) with k, p from
    `predsim_pool(C, (H, W), pool_target)` → flatten → Linear(→classes; zero-init weight if
    zero_init_pred, default bias) → CE.
  A branch whose weight is 0 (β = 1 or β = 0) is not built.
  Metrics: loss, sim, ce, accuracy (ce/accuracy only with a pred branch).
  """
  num_classes: int = 10
  beta: float = 0.99
  pool_target: int = 512
  zero_init_pred: bool = True

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    del train
    labels = batch["label"]
    loss = jnp.zeros((), jnp.float32)
    metrics = {}
    if self.beta != 0:
      if h.ndim == 4:
        h_sim = Conv(h.shape[-1], 3, use_bias=False, name="sim_conv")(h)
      else:
        h_sim = Dense(h.shape[-1], use_bias=False, name="sim_dense")(h)
      sim = losses.similarity_loss(h_sim, labels, self.num_classes)
      loss = loss + self.beta * sim
      metrics["sim"] = sim
    if self.beta != 1:
      x = h
      if h.ndim == 4:
        kernel, pad, _ = predsim_pool(h.shape[-1], h.shape[1:3], self.pool_target)
        x = avg_pool_include_pad(h, kernel, pad)
      logits = Dense(self.num_classes, zero_kernel=self.zero_init_pred,
                     name="pred")(x.reshape(x.shape[0], -1))
      ce = losses.cross_entropy(logits, labels)
      loss = loss + (1.0 - self.beta) * ce
      metrics.update(ce=ce, accuracy=losses.accuracy(logits, labels))
    metrics["loss"] = loss
    return loss, metrics
