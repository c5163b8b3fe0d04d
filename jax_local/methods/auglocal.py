"""auglocal: auxiliary nets that mimic uniformly selected later layers (docs/methods.md §6.3; quirk Q3).

Layers are the split's modules: layer l has output width net_dim[l], n = number of layers (the
AugLocal CIFAR splits are one block per layer: ResNet-32 n = 16, ResNet-110 n = 55).
- K reduction (`subtract_depth_from_k`, CIFAR code): K_eff = n − d; layers 0..K_eff−2 get aux
  nets and layers K_eff−1..n−1 (+ fc) merge into one final module trained by CE. Off: K_eff = n.
- Depth (pyramid): d_i = max(1, round(d·(1 − c·i/(K_eff−2)) + c·i/(K_eff−2))) for
  i = 0..K_eff−2, round half-to-even, c = pyramid_coeff; without pyramid d_i = d.
- Picks for layer l at depth d_l: all of l+1..n−1 if d_l ≥ n−1−l, else
  [round(l + (n−l−1)·j/d_l) for j = 1..d_l]; the last pick is always n−1.
- Strides: C_prev = net_dim[l], pool = 0; per pick j: pool += log2(net_dim[j]/C_prev),
  C_prev = net_dim[j]; stride 2 (and pool −= 1) if pool ≥ 1, else 1 (one halving per block;
  a leftover halving carries on, or is lost after the last pick).
- Head: fresh BasicBlocks (width net_dim[j], those strides) → GAP → [BN1d if d_l ≤ 1] → Linear;
  CE with weight 1 (`heads.auglocal.AugLocalHead`).
Section `method.auglocal`: aux_depth (d), pyramid, pyramid_coeff (c), subtract_depth_from_k.
It takes no plug-in: its aux nets already mimic later layers, and no paper defines the pair.
"""
from __future__ import annotations

import dataclasses
import math

import ml_collections
import numpy as np

from jax_local import config_errors
from jax_local.config_errors import ConfigError
from jax_local.heads.auglocal import AugLocalHead
from jax_local.heads.common import LogitsCE
from jax_local.plan import FINAL_HEAD, LossTerm, Plan, modules_from_ranges
from jax_local.registry import Method


def defaults():
  # the README settings are d=2 (ResNet-32), d=3 (ResNet-110)
  return {"auglocal": ml_collections.ConfigDict({
      "aux_depth": 2, "pyramid": True, "pyramid_coeff": 0.5,
      "subtract_depth_from_k": True,   # quirk Q3 (CIFAR code): K_eff = K - d
  })}


def validate(mc, split) -> None:
  al = mc.auglocal
  config_errors.integer("method.auglocal.aux_depth", al.aux_depth, 1)
  config_errors.unit("method.auglocal.pyramid_coeff", al.pyramid_coeff)
  if al.subtract_depth_from_k and split.num_modules - al.aux_depth < 2:
    raise ConfigError(
        f"config.method.auglocal.aux_depth={al.aux_depth} with subtract_depth_from_k=True leaves "
        f"K_eff = {split.num_modules} - {al.aux_depth} < 2 modules on split "
        f"{split.name!r}; lower aux_depth or set subtract_depth_from_k=False")


@dataclasses.dataclass(frozen=True)
class AuxNet:
  layer: int
  depth: int
  picks: tuple[int, ...]
  strides: tuple[int, ...]


def depth_schedule(d: int, k_eff: int, pyramid: bool, coeff: float) -> list[int]:
  """d_i for the aux nets of layers i = 0..k_eff−2."""
  out = []
  for i in range(k_eff - 1):
    if not pyramid:
      out.append(d)
      continue
    r = i / (k_eff - 2) if k_eff > 2 else 0.0
    out.append(max(1, int(np.round(d * (1 - coeff * r) + coeff * r))))
  return out


def select_layers(l: int, depth: int, n: int) -> tuple[int, ...]:
  if depth >= n - 1 - l:
    return tuple(range(l + 1, n))
  return tuple(int(np.round(l + (n - l - 1) * j / depth)) for j in range(1, depth + 1))


def select_strides(l: int, picks, net_dim) -> tuple[int, ...]:
  pool, prev, out = 0.0, net_dim[l], []
  for j in picks:
    pool += math.log2(net_dim[j] / prev)
    prev = net_dim[j]
    if pool >= 1:
      out.append(2)
      pool -= 1
    else:
      out.append(1)
  return tuple(out)


def aux_nets(net_dim, d: int, pyramid: bool, coeff: float, subtract_depth_from_k: bool):
  """(K_eff, [AuxNet for layers 0..K_eff−2]) for layer widths net_dim (n = len(net_dim))."""
  n = len(net_dim)
  k_eff = n - d if subtract_depth_from_k else n
  if k_eff < 2:
    raise ValueError(f"AugLocal: {n} layers with aux depth {d} leave K_eff={k_eff} < 2 "
                     "(lower method.auglocal.aux_depth or set subtract_depth_from_k=False)")
  nets = []
  for l, dl in enumerate(depth_schedule(d, k_eff, pyramid, coeff)):
    picks = select_layers(l, dl, n)
    nets.append(AuxNet(l, dl, picks, select_strides(l, picks, net_dim)))
  return k_eff, nets


def plan(mc, backbone, split, num_classes: int) -> Plan:
  """AugLocal's plan: one term per aux net (weight 1), then the merged final module (CE on fc)."""
  al = mc.auglocal
  ranges = split.module_ranges
  names = backbone.block_names
  net_dim = [backbone.module(names[b]).features for _, b in ranges]
  k_eff, nets = aux_nets(net_dim, al.aux_depth, al.pyramid, al.pyramid_coeff,
                         al.subtract_depth_from_k)
  ranges = list(ranges[:k_eff - 1]) + [(ranges[k_eff - 1][0], ranges[-1][1])]
  modules = modules_from_ranges(backbone, ranges)
  heads, terms = {}, []
  for net in nets:
    blocks = tuple((net_dim[j], s) for j, s in zip(net.picks, net.strides))
    heads[f"m{net.layer}"] = AugLocalHead(blocks, net.depth <= 1, num_classes)
    terms.append(LossTerm(f"m{net.layer}", net.layer, net.layer, f"m{net.layer}", 1.0))
  heads[FINAL_HEAD] = LogitsCE()
  terms.append(LossTerm(FINAL_HEAD, len(modules) - 1, len(modules) - 1, FINAL_HEAD, 1.0))
  desc = (f"auglocal: {split.describe()}; d={al.aux_depth}, pyramid={al.pyramid}, "
          f"K_eff={k_eff} -> {len(modules)} modules "
          f"(the last merges {len(net_dim) - k_eff + 1} layers)")
  return Plan(backbone, modules, heads, tuple(terms), description=desc)


SPEC = Method("auglocal", plan, defaults, validate,
              no_plugin="auglocal's aux nets already mimic later layers")
