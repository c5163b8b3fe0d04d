"""VGG with BatchNorm, DGL's layer-wise setting (docs/methods.md §2.3; `DGL imagenet_dgl/models/vgg.py`).

VGG-13 ("B"): conv3x3 p1 + BN + ReLU at widths 64, 64, M, 128, 128, M, 256, 256, M, 512, 512, M,
512, 512, M (10 convs; M = maxpool 2x2 s2). One block per conv, named "conv0".."conv{n-1}": a block
is the preceding max-pool (if any) plus its conv, so DGL's one-conv modules (`block_size=1`) are
single blocks. The final block "fc" is maxpool -> flatten (512·7·7 at 224 px) -> Linear 4096 ->
ReLU -> Linear 4096 -> ReLU -> Linear classes, without dropout. Spatial sizes of conv0..conv9 at
224 px: 224, 224, 112, 112, 56, 56, 28, 28, 14, 14. Init (DGL = torchvision): conv weights He
fan-out normal, conv biases 0, BN γ=1 β=0, Linear weights N(0, 0.01) and biases 0 (§1.3).
VGG-11/16/19 ("A"/"D"/"E") use the same blocks.
"""
from __future__ import annotations

import flax.linen as nn

from jax_local.models.backbone import Backbone
from jax_local.models.layers import BatchNorm, current_policy, he_fan_out

CFGS = {
    11: (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    13: (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512),
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512),
    19: (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
         512, 512, 512, 512),
}  # the final "M" belongs to the classifier block
HIDDEN = 4096


def _max_pool2(x):
  return nn.max_pool(x, (2, 2), strides=(2, 2))


class ConvBlock(nn.Module):
  """[maxpool 2x2 s2 if pool_first] -> conv3x3 p1 (bias 0) -> BN -> ReLU.

  [N,H,W,C] -> [N,H',W',features] with H' = H/2 if pool_first else H.
  """
  features: int
  pool_first: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    if self.pool_first:
      x = _max_pool2(x)
    x = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)), kernel_init=he_fan_out,
                bias_init=nn.initializers.zeros, dtype=current_policy().compute_dtype)(x)
    return nn.relu(BatchNorm(use_running_average=not train)(x))


class VGGClassifier(nn.Module):
  """maxpool 2x2 -> flatten (NHWC order) -> [Linear 4096, ReLU] x2 -> Linear classes.

  [N,14,14,512] -> logits [N, classes]; Linear weights N(0, 0.01), biases 0.
  """
  num_classes: int
  hidden: int = HIDDEN

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    x = _max_pool2(x)
    x = x.reshape(x.shape[0], -1)
    dense = lambda n: nn.Dense(n, kernel_init=nn.initializers.normal(0.01),
                               bias_init=nn.initializers.zeros,
                               dtype=current_policy().compute_dtype)
    x = nn.relu(dense(self.hidden)(x))
    x = nn.relu(dense(self.hidden)(x))
    return dense(self.num_classes)(x)


def vgg(depth: int, num_classes: int) -> Backbone:
  """VGG-`depth` (11, 13, 16, 19) with BN, one block per conv plus the classifier "fc"."""
  if depth not in CFGS:
    raise ValueError(f"config.model.depth={depth!r} is not a VGG depth; valid: "
                     f"{', '.join(map(str, CFGS))}")
  blocks, pool = [], False
  for v in CFGS[depth]:
    if v == "M":
      pool = True
      continue
    blocks.append((f"conv{len(blocks)}", ConvBlock(v, pool)))
    pool = False
  blocks.append(("fc", VGGClassifier(num_classes)))
  return Backbone(f"vgg{depth}", tuple(blocks))
