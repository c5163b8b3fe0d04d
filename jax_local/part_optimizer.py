"""The optimizer run part by part: each backbone block and each head is a part with its own
optimizer state, and the EMA copies inside heads are frozen (no update, no state).

Over the whole tree {"backbone": {block: ...}, "heads": {head: ...}} a `PartOptimizer` is an
optax-style transformation (`init`, `update`), which the fused executor applies inside its one
jitted step. The sequential executor calls `apply_part` once per part instead, and parts of
equal structure (the blocks of one ResNet stage, heads of equal shapes) share one compiled
program (one whole-tree update over the ~6,000 arrays of a ResNet-110 K=55 MLAAN state was most
of its step's XLA:CPU compile time; BENCHMARKS.md, compile time).

Per part, the update equals the whole-tree update for element-wise optimizers (the recipes' SGD
with momentum and coupled L2, Adam): every part keeps its own step count, and all counts advance
together. An optimizer that couples parts (clipping by the global norm, LARS over the whole
tree) must not be wrapped.
"""
from __future__ import annotations

import functools

import jax
import optax

from jax_local import ema

Part = tuple  # ("backbone", block name) | ("heads", head name)


def _frozen_labels(paths, tree):
  """optax.multi_transform labels of one head's tree: "frozen" under each EMA-copy path."""
  labels = jax.tree.map(lambda _: "trained", tree)
  for path in paths:
    labels = ema.set_path(labels, path, jax.tree.map(lambda _: "frozen", ema.get_path(tree, path)))
  return labels


class PartOptimizer:
  """`tx` applied to every part of the parameter tree separately; EMA copies (`ema_pairs`) get
  no update and no state. State: {"backbone": {block: tx state}, "heads": {head: state}}."""

  def __init__(self, tx: optax.GradientTransformation, ema_pairs=()):
    self.tx = tx
    self._frozen: dict[str, list] = {}
    for pair in ema_pairs:
      self._frozen.setdefault(pair.head, []).append(pair.path)
    self._part_txs = {(): tx}

  def part_tx(self, part: Part) -> optax.GradientTransformation:
    """The transformation of one part; parts with the same frozen paths share one object."""
    top, name = part
    paths = tuple(sorted(self._frozen.get(name, ()))) if top == "heads" else ()
    if paths not in self._part_txs:
      self._part_txs[paths] = optax.multi_transform(
          {"trained": self.tx, "frozen": optax.set_to_zero()},
          functools.partial(_frozen_labels, paths))
    return self._part_txs[paths]

  def init(self, params):
    return {top: {name: self.part_tx((top, name)).init(p) for name, p in tree.items()}
            for top, tree in params.items()}

  def update(self, grads, state, params):
    """(updates, new state) over the whole tree, part by part."""
    updates, new_state = {}, {}
    for top, tree in grads.items():
      updates[top], new_state[top] = {}, {}
      for name, g in tree.items():
        updates[top][name], new_state[top][name] = self.part_tx((top, name)).update(
            g, state[top][name], params[top][name])
    return updates, new_state


def apply_part(tx: optax.GradientTransformation, grads, opt_state, params):
  """One part's step: (params + update, new optimizer state)."""
  updates, opt_state = tx.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state
