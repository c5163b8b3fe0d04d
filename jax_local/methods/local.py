"""The plan shape of the local bases greedy, dgl, infopro and predsim (docs/methods.md §5.4).

Modules are the split's; module i < L−1 has one independent term `m{i}` with weight 1 on the
base's head for it, and the last module trains the network's own classifier with CE, weight 1
(term and head `FINAL_HEAD`):
    L = Σ_{i<L−1} head_i(E_i(sg a_i)) + CE(fc(E_{L−1}(sg a_{L−1})))
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn

from jax_local.heads.common import LogitsCE
from jax_local.plan import FINAL_HEAD, LossTerm, Plan, modules_from_ranges


def local_plan(name: str, backbone, split, head_of: Callable[[int, int], nn.Module]) -> Plan:
  """The plan above; head_of(i, L) is the head of module i's term."""
  modules = modules_from_ranges(backbone, split.module_ranges)
  num_modules = len(modules)
  heads, terms = {}, []
  for i in range(num_modules - 1):
    heads[f"m{i}"] = head_of(i, num_modules)
    terms.append(LossTerm(f"m{i}", i, i, f"m{i}", 1.0))
  heads[FINAL_HEAD] = LogitsCE()
  terms.append(LossTerm(FINAL_HEAD, num_modules - 1, num_modules - 1, FINAL_HEAD, 1.0))
  return Plan(backbone, modules, heads, tuple(terms), description=f"{name}: {split.describe()}")
