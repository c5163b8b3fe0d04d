"""Shared head utilities and the plain logits-CE head (docs/methods.md §1.5, §5.4, §6.2).

Head interface (used by the engine): a `flax.linen.Module` with
`__call__(h, batch, train) -> (loss, metrics)`, where `h` is NHWC features [N,H,W,C] (or
logits [N, classes]), `batch` holds "image" [N,Hi,Wi,Ci], "label" int32 [N] and "image01"
(de-normalised image in [0,1], same shape as "image"); `loss` is a float32 scalar including
the head's internal weights (not the plan's term weight); `metrics` is a flat dict of float32
scalars with at least "loss", and "accuracy" whenever the head predicts classes.
"""
from __future__ import annotations

import flax.linen as nn

from jax_local import losses


def ce_and_metrics(logits, labels, extra: dict | None = None):
  """CE loss on logits [N, K] and labels [N] -> (loss, {"loss", "ce", "accuracy", **extra})."""
  ce = losses.cross_entropy(logits, labels)
  metrics = {"loss": ce, "ce": ce, "accuracy": losses.accuracy(logits, labels)}
  metrics.update(extra or {})
  return ce, metrics


class LogitsCE(nn.Module):
  """CE + accuracy on the network's own classifier output (docs/methods.md §6.2, last module).

  h: logits [N, classes]. No parameters.
  """

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    del train
    return ce_and_metrics(h, batch["label"])
