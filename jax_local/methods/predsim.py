"""predsim: (1−β)·CE(pooled prediction) + β·similarity matching on every local module
(docs/methods.md §4.4).

Section `method.predsim`: beta (β in [0, 1]), pool_target (the prediction's pooled size),
zero_init_pred (the prediction layer starts at zero).
"""
from __future__ import annotations

import ml_collections

from jax_local import config_errors
from jax_local.heads.predsim import PredSimHead
from jax_local.methods.local import local_plan
from jax_local.registry import Method


def defaults():
  return {"predsim": ml_collections.ConfigDict(
      {"beta": 0.99, "pool_target": 512, "zero_init_pred": True})}


def validate(mc, split) -> None:
  del split
  config_errors.unit("method.predsim.beta", mc.predsim.beta)


def head(mc, num_classes: int, lam=(0.0, 1.0)):
  del lam
  ps = mc.predsim
  return PredSimHead(num_classes=num_classes, beta=ps.beta, pool_target=ps.pool_target,
                     zero_init_pred=ps.zero_init_pred)


def plan(mc, backbone, split, num_classes: int):
  return local_plan("predsim", backbone, split, lambda i, L: head(mc, num_classes))


SPEC = Method("predsim", plan, defaults, validate, head)
