"""Copies of backbone blocks inside heads: trainable copies and EMA copies (docs/methods.md §8.2, §9.1).

A copy's parameters live in its head's parameter tree at `params["heads"][head][name]` with exactly
the structure of the source block's parameters, and its BatchNorm running statistics at
`batch_stats["heads"][head][name]` (its own, never averaged: §8.2 "EMA rule"). A frozen (EMA) copy
enters the forward pass as `block(stop_gradient(θ_copy))(x)`: its parameters get exactly zero
gradient while the gradient still flows through the branch into `x` and the backbone (docs/design.md §4).
The EMA rule itself is `jax_local.ema` (declared per copy as an `EmaPair`). `init_copies` starts
the copies declared `copy_of_target` as their source block.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_local.models.backbone import apply_with_stats


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """How to rebuild a block outside the backbone: its class and constructor fields.

  `make()` returns a detached (parent=None) instance, usable with `.init`/`.apply` inside another
  module's compact method.
  """
  cls: type
  kwargs: tuple[tuple[str, Any], ...]

  @classmethod
  def of(cls, block: nn.Module) -> "BlockSpec":
    fields = tuple((f.name, getattr(block, f.name)) for f in dataclasses.fields(block)
                   if f.name not in ("parent", "name"))
    return cls(type(block), fields)

  def make(self) -> nn.Module:
    return self.cls(**dict(self.kwargs), parent=None)


def stop_gradient_tree(tree):
  return jax.tree.map(jax.lax.stop_gradient, tree)


def apply_copy(mdl: nn.Module, name: str, spec: BlockSpec, x, train: bool, frozen: bool,
               offset=None):
  """Runs a copy of `spec`'s block on x [N,H,W,C] from inside `mdl`'s compact method.

  Parameters are `mdl`'s param `name` (a fresh draw of the block's init at initialisation), BN
  statistics `mdl`'s batch_stats `name`. frozen: the parameters enter under stop_gradient.
  offset: a tree like the parameters added after the stop_gradient (MAN `param_offset`, §9.1).
  """
  block = spec.make()
  params = mdl.param(name, lambda rng: block.init(rng, x, train=True)["params"])
  stats = mdl.variable("batch_stats", name, lambda: block.init(
      jax.random.PRNGKey(0), x, train=True).get("batch_stats", {}))
  if frozen:
    params = stop_gradient_tree(params)
  if offset is not None:
    params = jax.tree.map(lambda p, o: p + o, params, offset)
  y, new_stats = apply_with_stats(block, params, stats.value, x, train=train)
  if train and not mdl.is_initializing() and mdl.is_mutable_collection("batch_stats"):
    stats.value = new_stats
  return y


def init_copies(plan, params):
  """Returns params with every copy a head declares in `copy_sources` (param name, source block)
  replaced by the source block's current (initial) parameters (`copy_init = copy_of_target`)."""
  heads = dict(params["heads"])
  for head_name, head in plan.heads.items():
    sources = getattr(head, "copy_sources", ())
    if not sources:
      continue
    hp = dict(heads[head_name])
    for copy, source in sources:
      src = params["backbone"][source]
      if jax.tree.structure(src) != jax.tree.structure(hp[copy]) or any(
          a.shape != b.shape for a, b in zip(jax.tree.leaves(src), jax.tree.leaves(hp[copy]))):
        raise ValueError(f"head {head_name}: copy {copy!r} does not match block {source!r}")
      hp[copy] = jax.tree.map(jnp.copy, src)   # own buffers: a state is donated leaf by leaf
    heads[head_name] = hp
  return {**params, "heads": heads}
