"""Loss coefficients of a head as values, not structure.

Some heads carry per-module loss weights as fields (InfoPro's λ_rec, λ_cls change linearly with
the module index, docs/methods.md §5.1). Compiled into a program as constants, they would make every
module's head a different program; the sequential executor instead compiles the head's
*structure* once and passes the coefficients in as arguments, so modules of equal shape share
one program (ResNet-110 K=55 InfoPro: a handful of programs instead of 55).

A head class names its coefficient fields in the class attribute `coefficient_fields`. A
coefficient that is the Python constant 0 is structure: it removes its sub-network (§1.6.4), so
it is kept in the structure; every other coefficient becomes 1.0 there and its value is carried
separately. Heads that wrap other heads (PFF, MAN, LAM) need nothing: `factor` and `bind` walk
module-valued fields and tuples of modules.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn


def is_active(coefficient) -> bool:
  """False only for the constant 0 (the sub-network it weights does not exist); a traced value
  is always active."""
  return not (isinstance(coefficient, (int, float)) and coefficient == 0)


def _fields(head: nn.Module):
  return [f.name for f in dataclasses.fields(head) if f.init and f.name not in ("parent", "name")]


def _map(head: nn.Module, leaf):
  """Rebuilds `head`, replacing each active coefficient c (depth-first order) by leaf(c)."""
  coefficient_fields = getattr(type(head), "coefficient_fields", ())
  changes = {}
  for name in _fields(head):
    value = getattr(head, name)
    if name in coefficient_fields and is_active(value):
      changes[name] = leaf(value)
    elif isinstance(value, nn.Module):
      changes[name] = _map(value, leaf)
    elif isinstance(value, tuple) and any(isinstance(v, nn.Module) for v in value):
      changes[name] = tuple(_map(v, leaf) if isinstance(v, nn.Module) else v
                            for v in value)
  return head.clone(**changes) if changes else head


def factor(head: nn.Module) -> tuple[nn.Module, tuple[float, ...]]:
  """(structure, values): `head` with its active coefficients set to 1.0, and their values."""
  values = []

  def take(c):
    values.append(float(c))
    return 1.0

  structure = _map(head, take)
  return structure, tuple(values)


def bind(structure: nn.Module, values) -> nn.Module:
  """Inverse of `factor`: the structure with its active coefficients replaced by `values`
  (floats or traced scalars), in the same order."""
  values = list(values)
  count = len(factor(structure)[1])
  if len(values) != count:
    raise ValueError(f"{len(values)} coefficient values for a head with {count} coefficients")
  it = iter(values)
  return _map(structure, lambda _: next(it))
