"""EMA copies of backbone blocks (MAN, MLAAN's leap modules): frozen parameters, averaged per step.

An EMA copy lives in the parameter tree of its head, at `params["heads"][head][*path]`, so the head
can apply it like any block; the head applies `stop_gradient` to it, and the optimizer leaves it
alone (`part_optimizer.PartOptimizer` freezes it). After each optimizer step
    ema <- decay * ema + (1 - decay) * theta_source
over parameters only, where theta_source is the source block's parameters *before* the step
(docs/methods.md §1.6 item 5: the references update EMA copies before `optimizer.step()`).
"""
from __future__ import annotations

import dataclasses

import jax


@dataclasses.dataclass(frozen=True)
class EmaPair:
  head: str                 # head whose parameters hold the copy
  path: tuple[str, ...]     # key path of the copy inside that head's parameters
  source: str               # backbone block it averages
  decay: float


def get_path(tree, path):
  """tree[path[0]][path[1]]..."""
  for key in path:
    tree = tree[key]
  return tree


def set_path(tree, path, value):
  """A copy of nested dicts `tree` with the value at `path` replaced (other branches shared)."""
  if not path:
    return value
  return {**tree, path[0]: set_path(tree[path[0]], path[1:], value)}


def average(copy, source, decay):
  """One EMA step of a copy: decay * copy + (1 - decay) * source (trees of equal structure)."""
  return jax.tree.map(lambda e, s: decay * e + (1.0 - decay) * s, copy, source)


def ema_update(pairs, pre_step_params, params):
  """Returns `params` with every EMA copy moved toward its source's pre-step parameters."""
  for pair in pairs:
    copy_path = ("heads", pair.head, *pair.path)
    source = pre_step_params["backbone"][pair.source]
    old = get_path(pre_step_params, copy_path)
    new = average(old, source, pair.decay)
    params = set_path(params, copy_path, new)
  return params
