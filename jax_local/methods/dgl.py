"""dgl: Decoupled Greedy Learning, a DGL auxiliary classifier with CE on every local module,
weight 1 (docs/methods.md §4.3, §5.4).

Field: `method.dgl_head`, a kind of `heads.dgl.DGLHead` (`heads.dgl.KINDS`).
"""
from __future__ import annotations

from jax_local import config_errors
from jax_local.heads import dgl as dgl_heads
from jax_local.methods.local import local_plan
from jax_local.registry import Method


def defaults():
  return {"dgl_head": "mlp-sr"}   # mlp | mlp-sr | cnn | final | auglocal | manpp


def validate(mc, split) -> None:
  del split
  config_errors.choice("method.dgl_head", mc.dgl_head, dgl_heads.KINDS)


def head(mc, num_classes: int, lam=(0.0, 1.0)):
  del lam
  return dgl_heads.DGLHead(mc.dgl_head, num_classes)


def plan(mc, backbone, split, num_classes: int):
  return local_plan("dgl", backbone, split, lambda i, L: head(mc, num_classes))


SPEC = Method("dgl", plan, defaults, validate, head)
