"""InfoPro heads: reconstruction decoder, auxiliary classifiers, the combined local loss and
its λ schedule (docs/methods.md §4.1, §4.2, §5.1, §5.3, §5.4).
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from jax_local import losses
from jax_local.heads.coefficients import is_active
from jax_local.heads.common import ce_and_metrics
from jax_local.models.layers import (BatchNorm, Conv, Dense, global_avg_pool,
                                     resize_align_corners)

CLASSIFIER_CONFIGS = ("0c1f", "0c2f", "1c1f", "1c2f", "1c3f", "2c2f")


def infopro_lambdas(j: int, k: int, ixx_1: float, ixy_1: float, ixx_2: float, ixy_2: float):
  """λ weights of local module j = 0..k-2 for k modules (docs/methods.md §5.1, convention A).

  r_j = j/(k−2) if k > 2 else 0;  λ1 = ixx_1(1−r_j) + ixx_2·r_j (decoder BCE, I(h,x));
  λ2 = ixy_1(1−r_j) + ixy_2·r_j (SupCon/CE, I(h,y)). Returns (λ1, λ2) as Python floats.
  """
  if not 0 <= j <= k - 2:
    raise ValueError(f"local module index j={j} outside 0..{k - 2} for k={k}")
  r = j / (k - 2) if k > 2 else 0.0
  return ixx_1 * (1 - r) + ixx_2 * r, ixy_1 * (1 - r) + ixy_2 * r


def conv_a_spec(c: int):
  """(width, stride) of the first aux-classifier conv for input width C (docs/methods.md §4.2).

  16 -> (32, 2), 32 -> (64, 2), 64 -> (64, 1) as in the reference. [decision] For other widths
  (the reference asserts C in {16, 32, 64}): (2C, 2) if C < 64, else (C, 1).
  """
  return {16: (32, 2), 32: (64, 2), 64: (64, 1)}.get(c, (2 * c, 2) if c < 64 else (c, 1))


class Decoder(nn.Module):
  """InfoPro CIFAR decoder (docs/methods.md §4.1); returns pre-sigmoid logits.

  h [N,H,W,C] -> resize to out_hw (bilinear, align_corners=True) -> conv3x3(C→12·widen, bias)
  -> BN -> ReLU -> conv3x3(12·widen→out_channels, bias) -> logits [N, out_hw[0], out_hw[1], 3].
  The sigmoid is folded into the BCE (`losses.bce_with_logits`, §1.5).
  """
  widen: float = 1
  out_channels: int = 3

  @nn.compact
  def __call__(self, h, out_hw: Sequence[int], train: bool = True):
    x = resize_align_corners(h, tuple(out_hw))
    x = Conv(int(12 * self.widen), 3, use_bias=True)(x)
    x = nn.relu(BatchNorm(use_running_average=not train)(x))
    return Conv(self.out_channels, 3, use_bias=True)(x)


class AuxClassifier(nn.Module):
  """InfoPro auxiliary classifier / projection net (docs/methods.md §4.2 table).

  h [N,H,W,C] -> [N, out_dim]. Convs are 3x3 without bias, each followed by BN + ReLU;
  conv_a as in `conv_a_spec(C)` (widths × widen); FC hidden width = int(hidden_dim·widen)
  (the reference's feature_dim·widen, 128 in every recipe).
    0c1f: GAP → FC(C→out)                      0c2f: GAP → FC(→128) → ReLU → FC(→out)
    1c1f: conv_a → GAP → FC(→out)              1c2f: conv_a → GAP → FC(→128) → ReLU → FC(→out)
    1c3f: 1c2f with an extra FC(128→128)+ReLU  2c2f: conv_a → conv3x3 s1 same width → 1c2f tail
  """
  config: str
  out_dim: int
  widen: float = 1
  hidden_dim: int = 128

  @nn.compact
  def __call__(self, h, train: bool = True):
    if self.config not in CLASSIFIER_CONFIGS:
      raise ValueError(f"unknown aux classifier config {self.config!r}")
    n_conv, n_fc = int(self.config[0]), int(self.config[2])
    x = h
    if n_conv:
      width, stride = conv_a_spec(h.shape[-1])
      width = int(width * self.widen)
      for i in range(n_conv):
        x = Conv(width, 3, stride=stride if i == 0 else 1)(x)
        x = nn.relu(BatchNorm(use_running_average=not train)(x))
    x = global_avg_pool(x)
    for _ in range(n_fc - 1):
      x = nn.relu(Dense(int(self.hidden_dim * self.widen))(x))
    return Dense(self.out_dim)(x)


def l2_normalize(x, eps: float = 1e-12):
  """Row-wise x / max(||x||_2, eps), as torch.nn.functional.normalize. x: [N, D]."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class InfoProHead(nn.Module):
  """InfoPro local loss of one module (docs/methods.md §5.1, §4.1, §4.2, §5.3).

  loss = λ_rec·BCE(Decoder(h), image01) + λ_cls·A(h, y), where A is SupCon on the
  L2-normalised classifier output (loss_mode "contrast", out dim feature_dim) or softmax CE
  (loss_mode "cross_entropy", out dim num_classes). The decoder is not built when λ_rec == 0
  and the classifier is not built when λ_cls == 0 (unused heads must not exist, §1.6.4).
  Metrics: loss, bce (if decoder), supcon or ce (if classifier), accuracy (CE mode only).
  h: [N,H,W,C]; decoder target batch["image01"] [N,Hi,Wi,3].
  """
  lambda_rec: float
  lambda_cls: float
  coefficient_fields = ("lambda_rec", "lambda_cls")
  classifier: str = "1c2f"
  loss_mode: str = "contrast"
  num_classes: int = 10
  feature_dim: int = 128
  temperature: float = 0.07
  widen: float = 1
  bce_torch_clamp: bool = False

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    if self.loss_mode not in ("contrast", "cross_entropy"):
      raise ValueError(f"unknown loss_mode {self.loss_mode!r}")
    loss = jnp.zeros((), jnp.float32)
    metrics = {}
    if is_active(self.lambda_rec):
      target = batch["image01"]
      logits = Decoder(self.widen, target.shape[-1], name="decoder")(h, target.shape[1:3], train)
      bce = losses.bce_with_logits(logits, target, self.bce_torch_clamp)
      loss = loss + self.lambda_rec * bce
      metrics["bce"] = bce
    if is_active(self.lambda_cls):
      contrast = self.loss_mode == "contrast"
      out = AuxClassifier(self.classifier, self.feature_dim if contrast else self.num_classes,
                          self.widen, self.feature_dim, name="classifier")(h, train)
      if contrast:
        sc = losses.supcon(l2_normalize(out), batch["label"], self.temperature)
        loss = loss + self.lambda_cls * sc
        metrics["supcon"] = sc
      else:
        ce, m = ce_and_metrics(out, batch["label"])
        loss = loss + self.lambda_cls * ce
        metrics.update(ce=ce, accuracy=m["accuracy"])
    metrics["loss"] = loss
    return loss, metrics


class ClassifierHead(nn.Module):
  """AuxClassifier(config, num_classes) + softmax CE (docs/methods.md §4.2, §5.4).

  Greedy SL is config "0c1f"; AugLocal's "InfoPro" CE baseline head is "1c2f".
  h: [N,H,W,C]. Metrics: loss, ce, accuracy.
  """
  config: str = "0c1f"
  num_classes: int = 10
  widen: float = 1
  hidden_dim: int = 128

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    logits = AuxClassifier(self.config, self.num_classes, self.widen, self.hidden_dim,
                           name="classifier")(h, train)
    return ce_and_metrics(logits, batch["label"])
