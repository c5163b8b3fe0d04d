"""bp: end-to-end backpropagation, the baseline (docs/methods.md §6.1).

One module holding every block and one term: CE on the network's own classifier, weight 1. The
split's cuts are ignored; it only names the modules an analysis reads.
"""
from __future__ import annotations

from jax_local.heads.common import LogitsCE
from jax_local.plan import FINAL_HEAD, LossTerm, Plan
from jax_local.registry import Method


def plan(mc, backbone, split, num_classes: int) -> Plan:
  del mc, split, num_classes
  terms = (LossTerm("bp", 0, 0, FINAL_HEAD, 1.0),)
  return Plan(backbone, (backbone.block_names,), {FINAL_HEAD: LogitsCE()}, terms,
              description=f"bp: 1 module (end-to-end), {len(backbone.blocks)} blocks")


SPEC = Method("bp", plan, min_modules=1, no_plugin="bp has no local modules")
