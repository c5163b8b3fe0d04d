"""ImageNet auxiliary heads (docs/methods.md §4.6, §5.2, §7.3, §8; quirks Q9, Q17).

- `ImageNetDecoder`: 1x1 conv to 128 then conv-BN-ReLU stages with bilinear align-corners
  resizes up to the image size, last conv to 3 channels; every conv has a bias (§1.3). Plans by
  the feature size S relative to the image size I (sizes quoted for I = 224):
    "infopro" (InfoPro K=2, S = 28): 128 -> up56 3x3 32 -> up112 3x3 12 -> up224 3x3 3.
    "hpff", dispatched on W (Q9 fix; the reference tests `size(4)`, so 7 px never reached its
    branch):  S=56: 128 -> up112 3x3 16 -> up224 3x3 3
              S=28: 128 -> up56 3x3 32 -> up112 3x3 16 -> up224 3x3 3
              S=14: 128 -> up112 3x3 64 -> resize56 3x3 32 -> up112 3x3 16 -> up224 3x3 3
              S=7:  128 -> up14 3x3 64 -> up28 1x1 32 -> up56 3x3 12 -> up112 3x3 6 -> up224 3x3 3
  "infopro" falls back to the "hpff" plan for S != I/8 [decision: the InfoPro code asserts 28].
- `ImageNetClassifier`: 1x1 C->c1, 3x3 s2 ->c2, 3x3 s2 ->c3, 1x1 ->2048 (no bias, each + BN +
  ReLU) -> GAP -> FC(2048 -> classes); (c1, c2, c3) = (128, 256, 512) for C <= 512 (InfoPro K=2
  and HPFF 256/512; Q17: also 64/128), (256, 256, 512) for 1024, (512, 512, 1024) for 2048 with
  BN sizes following the convs (Q9 fix).
- `ImageNetInfoProHead`: λ_rec·BCE(decoder) + λ_cls·CE(classifier), CE only (every ImageNet recipe).
  `quadrant_bce`: HPFF ImageNet's patch loss, BCE summed over the 2x2 quadrants of the decoded
  image (`HPFF Exp on Imagenet/networks/resnetInfoPro_HPFF.py:268-283`), i.e. 4·BCE for even sizes.
- `MlaanIAN`: MLAAN's ImageNet independent head (`MLAAN ImageNet/networks/auxnet34.py:11-49`):
  C <= 128: conv1x1 C->2C, BN, ReLU -> conv1x1 2C->C, BN, ReLU -> GAP -> FC; otherwise GAP -> FC.
`jax_local.methods.infopro` picks between these and the CIFAR heads (`method.infopro.head_family`).
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from jax_local import losses
from jax_local.heads.coefficients import is_active
from jax_local.heads.common import ce_and_metrics
from jax_local.models.layers import (BatchNorm, Conv, Dense, global_avg_pool,
                                     resize_align_corners)

# (image size / resize target, kernel, width) per conv after the first 1x1 -> 128; None: no resize.
DECODER_PLANS = {
    ("infopro", 8): ((4, 3, 32), (2, 3, 12), (1, 3, 3)),
    ("hpff", 4): ((2, 3, 16), (1, 3, 3)),
    ("hpff", 8): ((4, 3, 32), (2, 3, 16), (1, 3, 3)),
    ("hpff", 16): ((2, 3, 64), (4, 3, 32), (2, 3, 16), (1, 3, 3)),
    ("hpff", 32): ((16, 3, 64), (8, 1, 32), (4, 3, 12), (2, 3, 6), (1, 3, 3)),
}


def decoder_plan(variant: str, feature_w: int, image_w: int):
  """The conv stages after the 1x1 conv for a [.., feature_w, C] map decoded to image_w."""
  ratio = image_w // feature_w if feature_w and image_w % feature_w == 0 else None
  plan = DECODER_PLANS.get((variant, ratio)) or DECODER_PLANS.get(("hpff", ratio))
  if plan is None:
    raise ValueError(f"ImageNet decoder: no plan for {feature_w}-px features and {image_w}-px "
                     "images (the feature width must be image width / 4, 8, 16 or 32)")
  return plan


def classifier_widths(c: int) -> tuple[int, int, int]:
  """(c1, c2, c3) of `ImageNetClassifier` for input width C (Q9, Q17)."""
  if c <= 512:
    return 128, 256, 512
  if c <= 1024:
    return 256, 256, 512
  return 512, 512, 1024


class ImageNetDecoder(nn.Module):
  """h [N,h,w,C] -> pre-sigmoid logits [N, H, W, out_channels] at out_hw = (H, W).

  1x1 C->128 (bias), BN, ReLU, then per stage: resize (align corners) to out/d -> conv (bias)
  -> BN + ReLU (not after the last conv). The sigmoid is folded into the BCE (§1.5).
  """
  variant: str = "infopro"
  out_channels: int = 3

  @nn.compact
  def __call__(self, h, out_hw, train: bool = True):
    bn_relu = lambda x: nn.relu(BatchNorm(use_running_average=not train)(x))
    plan = decoder_plan(self.variant, h.shape[2], out_hw[1])
    x = bn_relu(Conv(128, 1, padding=0, use_bias=True)(h))
    for i, (d, k, width) in enumerate(plan):
      x = resize_align_corners(x, (out_hw[0] // d, out_hw[1] // d))
      last = i == len(plan) - 1
      x = Conv(self.out_channels if last else width, k, use_bias=True)(x)
      x = x if last else bn_relu(x)
    return x


class ImageNetClassifier(nn.Module):
  """h [N,H,W,C] -> logits [N, num_classes]; see the module docstring for the widths."""
  num_classes: int = 1000

  @nn.compact
  def __call__(self, h, train: bool = True):
    c1, c2, c3 = classifier_widths(h.shape[-1])
    x = h
    for width, k, stride in ((c1, 1, 1), (c2, 3, 2), (c3, 3, 2), (2048, 1, 1)):
      x = Conv(width, k, stride, padding=k // 2)(x)
      x = nn.relu(BatchNorm(use_running_average=not train)(x))
    return Dense(self.num_classes)(global_avg_pool(x))


def quadrant_bce(logits, target, torch_clamp: bool = False):
  """Σ over the 2x2 quadrants ([:H//2], [H//2:]) of the mean BCE: logits, target [N,H,W,C]."""
  h, w = target.shape[1] // 2, target.shape[2] // 2
  total = jnp.zeros((), jnp.float32)
  for rows in (slice(None, h), slice(h, None)):
    for cols in (slice(None, w), slice(w, None)):
      total = total + losses.bce_with_logits(logits[:, rows, cols], target[:, rows, cols],
                                             torch_clamp)
  return total


class ImageNetInfoProHead(nn.Module):
  """λ_rec·BCE(ImageNetDecoder(h), x01) + λ_cls·CE(ImageNetClassifier(h), y) (§4.6, §5.2, §7.3).

  h [N,H,W,C]; target batch["image01"] [N,Hi,Wi,3]. The decoder is not built when λ_rec = 0,
  the classifier not when λ_cls = 0. Metrics: loss, bce (if decoder), ce and accuracy (if
  classifier).
  """
  lambda_rec: float
  lambda_cls: float
  coefficient_fields = ("lambda_rec", "lambda_cls")
  num_classes: int = 1000
  decoder_variant: str = "infopro"
  quadrant_bce: bool = False
  bce_torch_clamp: bool = False

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    loss = jnp.zeros((), jnp.float32)
    metrics = {}
    if is_active(self.lambda_rec):
      target = batch["image01"]
      logits = ImageNetDecoder(self.decoder_variant, target.shape[-1], name="decoder")(
          h, target.shape[1:3], train)
      bce_fn = quadrant_bce if self.quadrant_bce else losses.bce_with_logits
      bce = bce_fn(logits, target, self.bce_torch_clamp)
      loss = loss + self.lambda_rec * bce
      metrics["bce"] = bce
    if is_active(self.lambda_cls):
      out = ImageNetClassifier(self.num_classes, name="classifier")(h, train)
      ce, m = ce_and_metrics(out, batch["label"])
      loss = loss + self.lambda_cls * ce
      metrics.update(ce=ce, accuracy=m["accuracy"])
    metrics["loss"] = loss
    return loss, metrics


class MlaanIAN(nn.Module):
  """MLAAN ImageNet IAN + CE: h [N,H,W,C] -> (loss, {loss, ce, accuracy}); see module docstring."""
  num_classes: int = 1000

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    c, x = h.shape[-1], h
    if c <= 128:
      for width in (2 * c, c):
        x = nn.relu(BatchNorm(use_running_average=not train)(Conv(width, 1, padding=0)(x)))
    return ce_and_metrics(Dense(self.num_classes)(global_avg_pool(x)), batch["label"])
