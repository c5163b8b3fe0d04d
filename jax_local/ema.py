"""EMA copies of backbone blocks (MAN, MLAAN's leap modules): frozen parameters, averaged per step.

An EMA copy lives in the parameter tree of its head, at `params["heads"][head][*path]`, so the head
can apply it like any block; the head applies `stop_gradient` to it, and the optimizer leaves it
alone (`frozen_labels` feeds `optax.multi_transform`). After each optimizer step
    ema <- decay * ema + (1 - decay) * theta_source
over parameters only, where theta_source is the source block's parameters *before* the step
(methods.md §1.6 item 5: the references update EMA copies before `optimizer.step()`).
"""
from __future__ import annotations

import dataclasses

import jax
import optax


@dataclasses.dataclass(frozen=True)
class EmaPair:
  head: str                 # head whose parameters hold the copy
  path: tuple[str, ...]     # key path of the copy inside that head's parameters
  source: str               # backbone block it averages
  decay: float


def _get(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def _set(tree, path, value):
  if not path:
    return value
  return {**tree, path[0]: _set(tree[path[0]], path[1:], value)}


def ema_update(pairs, pre_step_params, params):
  """Returns `params` with every EMA copy moved toward its source's pre-step parameters."""
  for pair in pairs:
    copy_path = ("heads", pair.head, *pair.path)
    source = pre_step_params["backbone"][pair.source]
    old = _get(pre_step_params, copy_path)
    new = jax.tree.map(lambda e, s, d=pair.decay: d * e + (1.0 - d) * s, old, source)
    params = _set(params, copy_path, new)
  return params


def frozen_labels(pairs, params):
  """optax.multi_transform labels: "frozen" for EMA copies, "trained" for everything else."""
  labels = jax.tree.map(lambda _: "trained", params)
  for pair in pairs:
    copy_path = ("heads", pair.head, *pair.path)
    labels = _set(labels, copy_path, jax.tree.map(lambda _: "frozen", _get(params, copy_path)))
  return labels


def freeze_copies(tx, pairs):
  """Wraps an optimizer so EMA copies get no update and no optimizer state (identity if none)."""
  if not pairs:
    return tx
  return optax.multi_transform({"trained": tx, "frozen": optax.set_to_zero()},
                               lambda params: frozen_labels(pairs, params))
