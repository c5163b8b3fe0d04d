"""AugLocal auxiliary net (docs/methods.md §6.3): fresh blocks mimicking later layers + a linear head."""
from __future__ import annotations

import flax.linen as nn

from jax_local.heads.common import ce_and_metrics
from jax_local.models.cifar_resnet import BasicBlock
from jax_local.models.layers import BatchNorm, Dense, global_avg_pool


class AugLocalHead(nn.Module):
  """h [N,H,W,C] → BasicBlock(w_1, s_1) → … → BasicBlock(w_d, s_d) → GAP → [BN1d] → Linear → CE.

  blocks: ((width, stride), …) from `jax_local.methods.auglocal.aux_nets` (new parameters, no copy, no
  EMA; projection shortcut where stride ≠ 1 or the width changes). bn_head: BatchNorm1d before the
  Linear (the reference does it when the aux depth d_l ≤ 1). Metrics: loss, ce, accuracy.
  """
  blocks: tuple[tuple[int, int], ...]
  bn_head: bool
  num_classes: int = 10

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    x = h
    for width, stride in self.blocks:
      x = BasicBlock(width, stride)(x, train)
    x = global_avg_pool(x)
    if self.bn_head:
      x = BatchNorm(use_running_average=not train)(x)
    return ce_and_metrics(Dense(self.num_classes)(x), batch["label"])
