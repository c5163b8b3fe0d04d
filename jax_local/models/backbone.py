"""A backbone is an ordered list of named blocks; nothing in it knows about local learning.

Parameters and BatchNorm statistics are kept per block (`params[name]`, `batch_stats[name]`), so
a split can group consecutive blocks into modules anywhere, and plugins can reuse a block's
definition (e.g. an EMA copy of block "s2b0") by name.
"""
from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

import flax.linen as nn
import jax

Params = dict[str, Any]

_RESIDUAL = re.compile(r"s(\d+)b(\d+)")


def residual_name(stage: int, index: int) -> str:
  """Name of residual block `index` of stage `stage` (both as in "s.b", stages from 1): "s{s}b{b}".

  The ResNet backbones name their blocks with it; splits, leap lists and stage-based λ schedules
  read block positions back with `residual_position` (docs/methods.md §3.1).
  """
  return f"s{stage}b{index}"


def residual_position(name: str) -> tuple[int, int] | None:
  """(stage, index) of a residual block name "s{s}b{b}"; None for "stem", "conv<i>", "fc"."""
  m = _RESIDUAL.fullmatch(name)
  return (int(m.group(1)), int(m.group(2))) if m else None


@dataclasses.dataclass(frozen=True)
class Backbone:
  """Ordered blocks `(name, module)`; each module maps `(x, train) -> y`.

  The last block is the network's classifier (it outputs logits); the first is the stem.
  """
  name: str
  blocks: tuple[tuple[str, nn.Module], ...]

  @property
  def block_names(self) -> tuple[str, ...]:
    return tuple(n for n, _ in self.blocks)

  def module(self, name: str) -> nn.Module:
    return dict(self.blocks)[name]

  def init(self, rng, x) -> tuple[Params, Params, dict[str, tuple[int, ...]]]:
    """Initialises every block in order on input `x` [N, H, W, C], one jitted program per
    distinct block (a ResNet-110 has a handful), so a deep backbone compiles its init quickly.

    Returns `(params, batch_stats, out_shapes)`, each a dict keyed by block name; out_shapes
    holds each block's output shape for the batch size of `x`.
    """
    params, stats, shapes, programs = {}, {}, {}, {}
    for i, (name, block) in enumerate(self.blocks):
      if block not in programs:   # equal blocks share one compiled init (when not traced)
        programs[block] = jax.jit(functools.partial(_init_block, block))
      params[name], stats[name], x = programs[block](jax.random.fold_in(rng, i), x)
      shapes[name] = x.shape
    return params, stats, shapes


def apply_with_stats(module: nn.Module, params, stats, *args, **kwargs):
  """`module.apply` with its BatchNorm statistics mutable; returns `(output, new_stats)`.

  `stats` is the module's "batch_stats" collection ({} for a module without BatchNorm); `args`
  and `kwargs` go to the module's `__call__` (e.g. `x, train=True`). In train mode new_stats are
  the running averages after this call (docs/methods.md §1.2); a module that writes none (eval
  mode, no BatchNorm) gives {}. Shared by blocks, heads and plugin copies so every train-mode
  call updates statistics the same way.
  """
  out, updated = module.apply({"params": params, "batch_stats": stats}, *args,
                              mutable=["batch_stats"], **kwargs)
  return out, updated.get("batch_stats", {})


def _init_block(block: nn.Module, rng, x):
  """(params, batch_stats, output) of a freshly initialised block on input x."""
  variables = block.init(rng, x, train=True)
  params, stats = variables["params"], variables.get("batch_stats", {})
  y, _ = apply_with_stats(block, params, stats, x, train=True)
  return params, stats, y


def apply_block(block: nn.Module, params, stats, x, train: bool):
  """Runs one block; returns `(y, new_stats)` (stats unchanged in eval mode)."""
  if not train:
    return block.apply({"params": params, "batch_stats": stats}, x, train=False), stats
  return apply_with_stats(block, params, stats, x, train=True)
