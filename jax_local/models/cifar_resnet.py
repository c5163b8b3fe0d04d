"""CIFAR ResNet of depth 6n+2, the InfoPro variant used by every CIFAR reference (docs/methods.md §2.1).

stem: conv3x3 3->16 (no bias), BN, ReLU; three stages of n BasicBlocks at 16/32/64 channels
(stride 2 at the first block of stages 2 and 3); classifier: global average pool, Linear(64->classes).
Blocks are named "stem", "s1b0" .. "s3b{n-1}", "fc"; block index 1 + (s-1)*n + b is block s.b.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jax_local.models.backbone import Backbone, residual_name
from jax_local.models.layers import BatchNorm, Classifier, Conv

STAGE_WIDTHS = (16, 32, 64)


class Stem(nn.Module):
  features: int = 16

  @nn.compact
  def __call__(self, x, train: bool):
    x = Conv(self.features, 3)(x)
    return nn.relu(BatchNorm(use_running_average=not train)(x))


class BasicBlock(nn.Module):
  """conv3x3(stride)-BN-ReLU-conv3x3-BN, plus shortcut, ReLU.

  shortcut "projection": conv1x1(stride)+BN where stride != 1 or the width changes (the reference);
  "zero_pad": DGL's option A (subsample, zero-pad channels), only for the ddg_comparison setting.
  """
  features: int
  stride: int = 1
  shortcut: str = "projection"

  @nn.compact
  def __call__(self, x, train: bool):
    y = Conv(self.features, 3, self.stride)(x)
    y = nn.relu(BatchNorm(use_running_average=not train)(y))
    y = Conv(self.features, 3)(y)
    y = BatchNorm(use_running_average=not train)(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      if self.shortcut == "projection":
        x = Conv(self.features, 1, self.stride, padding=0)(x)
        x = BatchNorm(use_running_average=not train)(x)
      else:
        x = x[:, ::self.stride, ::self.stride, :]
        extra = self.features - x.shape[-1]
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
    return nn.relu(y + x)


def stage_sizes(depth: int) -> int:
  """Blocks per stage n for depth 6n+2; raises ValueError otherwise."""
  if depth < 8 or (depth - 2) % 6:
    raise ValueError(f"config.model.depth={depth} is not a CIFAR ResNet depth: use 6n+2 "
                     "(e.g. 8, 20, 32, 56, 110)")
  return (depth - 2) // 6


def cifar_resnet(depth: int, num_classes: int, shortcut: str = "projection") -> Backbone:
  n = stage_sizes(depth)
  blocks = [("stem", Stem(STAGE_WIDTHS[0]))]
  for s, width in enumerate(STAGE_WIDTHS, start=1):
    for b in range(n):
      stride = 2 if (s > 1 and b == 0) else 1
      blocks.append((residual_name(s, b), BasicBlock(width, stride, shortcut)))
  blocks.append(("fc", Classifier(num_classes)))
  return Backbone(f"resnet{depth}", tuple(blocks))
