"""ImageNet ResNets and ResNeXts, torchvision v1.5 layout (docs/methods.md §2.2, §1.3).

stem: conv7x7 s2 p3 3->64 (no bias), BN, ReLU, maxpool 3x3 s2 p1: [N,224,224,3] -> [N,56,56,64].
Four stages at 56/28/14/7 px (stride 2 at the first block of stages 2-4, on the 3x3 conv):
  BasicBlock (ResNet-18/34):   widths 64,128,256,512.
  Bottleneck (ResNet-50/101/152, ResNeXt): 1x1 -> 3x3(stride, groups) -> 1x1, output width
  4·planes = 256,512,1024,2048; inner width int(planes·width_per_group/64)·groups
  (ResNeXt-101 32x8d: groups 32, width_per_group 8, i.e. 4·planes).
A projection shortcut conv1x1(stride)+BN sits wherever stride != 1 or the width changes (the first
block of every stage; for bottlenecks block 1.0 too). Classifier: GAP -> Linear(-> classes).
Blocks are named "stem", "s1b0" .. "s4b{n-1}", "fc"; block s.b has index 1 + Σ_{t<s} n_t + b.
Every block exposes `features`, its output width. `zero_init_residual` sets γ = 0 on the last BN of
each residual branch (bn2 / bn3), as MLAAN's ImageNet ResNet-34 (§1.3); off by default.
"""
from __future__ import annotations

import flax.linen as nn

from jax_local.models.backbone import Backbone, residual_name
from jax_local.models.layers import BatchNorm, Classifier, Conv

# depth -> (block kind, blocks per stage)
STAGES = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
          50: ("bottleneck", (3, 4, 6, 3)), 101: ("bottleneck", (3, 4, 23, 3)),
          152: ("bottleneck", (3, 8, 36, 3))}
PLANES = (64, 128, 256, 512)


def _bn(train: bool, zero: bool = False):
  return BatchNorm(use_running_average=not train,
                   scale_init=nn.initializers.zeros if zero else nn.initializers.ones)


class Stem(nn.Module):
  """conv7x7 s2 -> BN -> ReLU -> maxpool 3x3 s2 p1: [N,H,W,3] -> [N,H/4,W/4,features]."""
  features: int = 64

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(_bn(train)(Conv(self.features, 7, 2)(x)))
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def _shortcut(x, features: int, stride: int, train: bool):
  if stride == 1 and x.shape[-1] == features:
    return x
  return _bn(train)(Conv(features, 1, stride, padding=0)(x))


class BasicBlock(nn.Module):
  """conv3x3(stride)-BN-ReLU-conv3x3-BN(γ=0 if zero_init_last) + shortcut, ReLU.

  [N,H,W,C] -> [N,H/stride,W/stride,features].
  """
  features: int
  stride: int = 1
  zero_init_last: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    y = nn.relu(_bn(train)(Conv(self.features, 3, self.stride)(x)))
    y = _bn(train, self.zero_init_last)(Conv(self.features, 3)(y))
    return nn.relu(y + _shortcut(x, self.features, self.stride, train))


class Bottleneck(nn.Module):
  """conv1x1-BN-ReLU-conv3x3(stride, groups)-BN-ReLU-conv1x1-BN + shortcut, ReLU.

  [N,H,W,C] -> [N,H/stride,W/stride,features]; features = 4·planes, inner width
  int(planes·width_per_group/64)·groups (torchvision v1.5: the stride is on the 3x3).
  """
  features: int
  stride: int = 1
  groups: int = 1
  width_per_group: int = 64
  zero_init_last: bool = False

  @nn.compact
  def __call__(self, x, train: bool):
    width = int(self.features // 4 * self.width_per_group / 64) * self.groups
    y = nn.relu(_bn(train)(Conv(width, 1, padding=0)(x)))
    y = nn.relu(_bn(train)(Conv(width, 3, self.stride, feature_group_count=self.groups)(y)))
    y = _bn(train, self.zero_init_last)(Conv(self.features, 1, padding=0)(y))
    return nn.relu(y + _shortcut(x, self.features, self.stride, train))


def stage_sizes(depth: int) -> tuple[int, ...]:
  """Blocks per stage of an ImageNet ResNet; raises ValueError naming model.depth."""
  if depth not in STAGES:
    raise ValueError(f"config.model.depth={depth!r} is not an ImageNet ResNet depth; "
                     f"valid: {', '.join(map(str, STAGES))}")
  return STAGES[depth][1]


def imagenet_resnet(depth: int, num_classes: int, groups: int = 1, width_per_group: int = 64,
                    zero_init_residual: bool = False) -> Backbone:
  """ResNet-`depth` (groups=1, width 64) or ResNeXt (e.g. 101, 32, 8) as a Backbone."""
  sizes = stage_sizes(depth)  # raises ValueError naming model.depth
  kind = STAGES[depth][0]
  if kind == "basic" and (groups, width_per_group) != (1, 64):
    raise ValueError(f"ResNet-{depth} has basic blocks: no groups / width_per_group")
  blocks = [("stem", Stem(64))]
  for s, (n, planes) in enumerate(zip(sizes, PLANES), start=1):
    for b in range(n):
      stride = 2 if (s > 1 and b == 0) else 1
      if kind == "basic":
        block = BasicBlock(planes, stride, zero_init_residual)
      else:
        block = Bottleneck(4 * planes, stride, groups, width_per_group, zero_init_residual)
      blocks.append((residual_name(s, b), block))
  blocks.append(("fc", Classifier(num_classes)))
  name = f"resnet{depth}" if groups == 1 else f"resnext{depth}_{groups}x{width_per_group}d"
  return Backbone(name, tuple(blocks))
