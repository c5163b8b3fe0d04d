"""DGL auxiliary heads (docs/methods.md §4.3, §5.4): CE on the head's logits, weight 1.

kinds:
- "mlp", "mlp-sr", "cnn": original DGL `aux(C, in_size, cnn, n_lin, mlp)` (§4.3a); "final" is
  DGL's last-module classifier (n_lin 0, mlp 2, with spatial reduction).
- "auglocal": AugLocal's DGL baseline for CIFAR ResNets (§4.3b).
- "manpp": the MAN++/MLAAN "auxDGL" head (§4.3c); `manpp_prepool=False` gives MLAAN's version.
"""
from __future__ import annotations

import math

import flax.linen as nn

from jax_local.heads.common import ce_and_metrics
from jax_local.models.layers import BatchNorm, Conv, Dense, adaptive_avg_pool, global_avg_pool

# kind -> (n_lin, mlp, cnn) for the original DGL family (§4.3a)
DGL_ORIG = {"mlp": (0, 3, False), "mlp-sr": (3, 3, False), "cnn": (2, 0, True),
            "final": (0, 2, False)}
KINDS = tuple(DGL_ORIG) + ("auglocal", "manpp")


class DGLHead(nn.Module):
  """DGL-family auxiliary classifier + CE. h: [N,H,W,C] -> (loss, {loss, ce, accuracy}).

  Original DGL (§4.3a), in_size = H unless `in_size` is given (quirk Q19 passes H/2):
    [not cnn: adaptive-pool to ⌈in_size/4⌉²] → n_lin × [conv C→C (3x3 if cnn else 1x1), no bias
    → BN → ReLU] → adaptive-pool 2×2 → [mlp == 0: BN2d] → flatten (4C)
    → mlp × [Linear(→4C) → BN1d → ReLU] → Linear(→classes).
  auglocal (§4.3b), S = H: adaptive-pool ⌈S/4⌉ → 3 × [conv1x1 C→C no bias → BN → ReLU]
    → adaptive-pool m = min(⌈S/4⌉, 2) → flatten F = C·m² → 2 × [Linear(F→F, no bias) → BN1d
    → ReLU] → Linear(F→classes).
  manpp (§4.3c): [adaptive-pool 8×8] → 3 × [conv1x1 (→128) no bias → BN → ReLU] → GAP
    → 3 × [Linear(→512) → BN1d → ReLU] → Linear(512→classes).
  """
  kind: str
  num_classes: int = 10
  in_size: int | None = None
  manpp_prepool: bool = True

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    bn = lambda: BatchNorm(use_running_average=not train)
    c, s = h.shape[-1], h.shape[1]
    x = h
    if self.kind in DGL_ORIG:
      n_lin, mlp, cnn = DGL_ORIG[self.kind]
      if not cnn:
        x = adaptive_avg_pool(x, math.ceil((self.in_size or s) / 4))
      for _ in range(n_lin):
        x = nn.relu(bn()(Conv(c, 3 if cnn else 1, use_bias=False)(x)))
      x = adaptive_avg_pool(x, 2)
      if mlp == 0:
        x = bn()(x)
      x = x.reshape(x.shape[0], -1)
      for _ in range(mlp):
        x = nn.relu(bn()(Dense(4 * c)(x)))
    elif self.kind == "auglocal":
      p = math.ceil(s / 4)
      x = adaptive_avg_pool(x, p)
      for _ in range(3):
        x = nn.relu(bn()(Conv(c, 1, use_bias=False)(x)))
      x = adaptive_avg_pool(x, min(p, 2))
      x = x.reshape(x.shape[0], -1)
      for _ in range(2):
        x = nn.relu(bn()(Dense(x.shape[-1], use_bias=False)(x)))
    elif self.kind == "manpp":
      if self.manpp_prepool:
        x = adaptive_avg_pool(x, 8)
      for _ in range(3):
        x = nn.relu(bn()(Conv(128, 1, use_bias=False)(x)))
      x = global_avg_pool(x)
      for _ in range(3):
        x = nn.relu(bn()(Dense(512)(x)))
    else:
      raise ValueError(f"unknown DGL head kind {self.kind!r}; expected one of {KINDS}")
    logits = Dense(self.num_classes)(x)
    return ce_and_metrics(logits, batch["label"])
