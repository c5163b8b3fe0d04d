"""greedy: Greedy supervised learning, InfoPro's 0c1f classifier with CE on every local module,
weight 1 (docs/methods.md §5.4)."""
from __future__ import annotations

from jax_local.heads.infopro import ClassifierHead
from jax_local.methods.local import local_plan
from jax_local.registry import Method


def head(mc, num_classes: int, lam=(0.0, 1.0)):
  del mc, lam
  return ClassifierHead("0c1f", num_classes)


def plan(mc, backbone, split, num_classes: int):
  return local_plan("greedy", backbone, split, lambda i, L: head(mc, num_classes))


SPEC = Method("greedy", plan, head=head)
