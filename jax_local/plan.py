"""A plan: the backbone cut into modules, the heads, and the loss terms of one training step.

A loss term `(first, last, head, weight)` has the value
    weight * head(E_last(... E_first(stop_gradient(a_first)) ...), batch)
where a_first is the input of module `first` (a_0 is the image). An independent term has
first == last; a cascade term spans several modules; BP is one term over all modules.
Which parameters a term can reach is therefore a property of the plan alone
(`Plan.reachable_blocks`), testable without running a model.

The plan also holds the input's normalisation, image = (x01 - mean) / std per channel with x01
the image in [0, 1], so that the executors and the evaluation give heads that reconstruct the
input its target x01 (`engine.forward.with_image01`).
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import flax.linen as nn

from jax_local.ema import EmaPair
from jax_local.models.backbone import Backbone

FINAL_HEAD = "final"   # the head of the network's own classifier: CE on the last module's logits


@dataclasses.dataclass(frozen=True)
class LossTerm:
  name: str     # metric prefix, e.g. "m3" or "final"
  first: int    # first module (its input is stop-gradient'ed)
  last: int     # last module; the head reads its output
  head: str     # key into Plan.heads
  weight: float


@dataclasses.dataclass(frozen=True)
class Plan:
  """backbone + module boundaries + heads + loss terms.

  modules[i] is the tuple of block names of gradient-isolated module i, in order; the last
  module ends with the backbone's classifier block, so its output is logits. normalisation:
  (mean, std) of the dataset, per channel in [0, 1] units (`data.catalog`); None for a plan
  that is only inspected (no step can run it).
  """
  backbone: Backbone
  modules: tuple[tuple[str, ...], ...]
  heads: Mapping[str, nn.Module]
  terms: tuple[LossTerm, ...]
  description: str = ""
  ema_pairs: tuple[EmaPair, ...] = ()   # EMA copies held by heads (MAN, LAM)
  bn_updates: tuple[int, ...] = ()      # per module: BN running-average updates per step (Q23)
  normalisation: tuple[tuple[float, ...], tuple[float, ...]] | None = None   # (mean, std)

  def __post_init__(self):
    flat = [b for m in self.modules for b in m]
    if tuple(flat) != self.backbone.block_names:
      raise ValueError("plan modules must cover the backbone blocks exactly once, in order")
    for t in self.terms:
      if not 0 <= t.first <= t.last < len(self.modules):
        raise ValueError(f"term {t.name}: window {t.first}..{t.last} outside 0..{len(self.modules) - 1}")
      if t.head not in self.heads:
        raise ValueError(f"term {t.name}: unknown head {t.head!r}")

  @property
  def num_modules(self) -> int:
    return len(self.modules)

  def reachable_blocks(self, term: LossTerm) -> tuple[str, ...]:
    """Backbone blocks a term's gradient may reach: those of modules first..last."""
    return tuple(b for m in self.modules[term.first:term.last + 1] for b in m)

  def terms_ending_at(self, module: int) -> tuple[LossTerm, ...]:
    return tuple(t for t in self.terms if t.last == module)

  def num_terms_covering(self, module: int) -> int:
    """Number of terms whose window first..last contains `module`."""
    return sum(t.first <= module <= t.last for t in self.terms)


def modules_from_ranges(backbone: Backbone, ranges) -> tuple[tuple[str, ...], ...]:
  """Block-index ranges (inclusive) -> block-name tuples; the classifier joins the last module."""
  names = backbone.block_names
  modules = [tuple(names[a:b + 1]) for a, b in ranges]
  last_covered = ranges[-1][1]
  modules[-1] = modules[-1] + tuple(names[last_covered + 1:])
  return tuple(modules)
