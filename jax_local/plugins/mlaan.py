"""mlaan: MLAAN, multilaminar cascades (MLM) + Leap Augmented Modules (LAM) (docs/methods.md §8.1-§8.2).

LAM of the cascade term ending at module j takes the leap list B_j = [b_0, b_1, …] of later
backbone blocks and runs, on the cascade output z (§8.2 code):
    z ← Aug_0(z) + EMA_0(z);   z ← Aug_ℓ(z) for ℓ ≥ 1        (ema_at = "first", the code)
    (ema_at = "all_layers": z ← Aug_ℓ(z) + EMA_ℓ(z) at every layer)
then the CAN (the base's head at the last block's width). Aug_ℓ are trainable copies of b_ℓ;
EMA_ℓ are frozen copies updated after each step as EMA_ℓ ← r·EMA_ℓ + (1−r)·θ(b_ℓ), r = 0.995.
`lam.ema_update = "last_only"` (quirk Q7, CIFAR code) updates only the copies of the last LAM; the
others keep their initial values (their EmaPair has decay 1). `lam.copy_init`: copy_of_target
(CIFAR code: copies start equal to the real block's initial parameters, set by
`plugins.copies.init_copies` after initialisation) or independent (ImageNet code, Q14).
Leap lists: the published ones (CIFAR ResNet-32 keys 8/15, ResNet-110 keys 32/54; ImageNet
ResNet-34/101/152 keys 16/33/50), used when the split has exactly those modules, otherwise the
generic rule `generic_leap_list`.
Sections `method.mlm` (the cascades, `plugins.hilo`) and `method.lam` (ema_decay r, ema_update,
ema_at, copy_init, leap_lists). Composes with every base that has a local head.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import ml_collections

from jax_local import config_errors, splits
from jax_local.config_errors import ConfigError
from jax_local.ema import EmaPair
from jax_local.models.backbone import residual_position
from jax_local.plan import Plan
from jax_local.plugins import hilo, schedules
from jax_local.plugins.copies import BlockSpec, apply_copy
from jax_local.registry import Plugin

LEAP_LISTS = ("auto", "published", "generic")
UPDATES = ("all", "last_only")
EMA_AT = ("first", "all_layers")
COPY_INITS = ("copy_of_target", "independent")

# preset -> [(first module, last module, "s.b s.b ...")] (§8.2 table; CIFAR:
# `MLAAN CIFAR-SVHN-STL/networks/configAuxPlus_new.py` keys 8/15/32/54, ImageNet:
# `MLAAN ImageNet/networks/configAux_new.py` keys 16/33/50); the last module never has a list.
_PUBLISHED = {
    "r32_k8_hpff": [(0, 1, "2.0 3.0 3.2 3.4"), (2, 2, "2.0 3.0 3.3 3.4"),
                    (3, 4, "3.0 3.2 3.3 3.4"), (5, 5, "3.2 3.3 3.4"), (6, 6, "3.3 3.4"),
                    (7, 7, "3.4")],
    "r32_k16_hpff": [(0, 1, "2.0 3.0 3.2 3.4"), (2, 2, "2.0 3.0 3.3 3.4"),
                     (3, 3, "2.0 3.0 3.2 3.4"), (4, 4, "2.0 3.0 3.3 3.4"),
                     (5, 9, "3.0 3.2 3.3 3.4"), (10, 10, "3.1 3.2 3.4"), (11, 11, "3.2 3.3 3.4"),
                     (12, 12, "3.3 3.4"), (13, 13, "3.4")],
    "r110_k32": [(0, 10, "2.0 3.0 3.2 3.17"), (11, 20, "3.0 3.2 3.3 3.17"),
                 (21, 21, "3.0 3.3 3.4 3.17"), (22, 25, "3.8 3.17"), (26, 27, "3.14 3.17"),
                 (28, 28, "3.15 3.17"), (29, 29, "3.16 3.17"), (30, 30, "3.17")],
    "r110_k55_hpff": [(0, 17, "2.0 3.0 3.2 3.17"), (18, 34, "3.0 3.2 3.3 3.17"),
                      (35, 35, "3.0 3.3 3.4 3.17"), (36, 42, "3.8 3.17"), (43, 46, "3.14 3.17"),
                      (47, 48, "3.15 3.17"), (49, 51, "3.16 3.17"), (52, 52, "3.17")],
    "r34_k17_mlaan": [(0, 2, "2.0 2.1 3.0 4.0 4.2"), (3, 6, "2.1 3.0 4.0 4.2"),
                      (7, 12, "3.1 4.0 4.1"), (13, 13, "4.1 4.1 4.2"), (14, 14, "4.1 4.2")],
    # docs/methods.md §8.2: not 7–30 / 31–32 and 11–47 / 48–49; the reference lists have one entry
    # fewer (32 and 49, counted in configAux_new.py), which also keeps the block widths consistent.
    "r101_k34_mlaan": [(0, 2, "2.0 3.0 4.0 4.2"), (3, 6, "3.0 4.0 4.1"), (7, 29, "4.0 4.1"),
                       (30, 31, "4.1 4.2")],
    "r152_k51_mlaan": [(0, 2, "2.0 3.0 4.0 4.2"), (3, 10, "3.0 4.0 4.1"), (11, 46, "4.0 4.1"),
                       (47, 48, "4.1 4.2")],
}


PUBLISHED_PRESETS = tuple(_PUBLISHED)


def defaults():
  return {
      "mlm": hilo.section(k=3,                          # paper; the CIFAR code uses 2
                          lambda_schedule="man_stage",  # quirk Q6 (MLAAN-InfoPro code)
                          final_x_loss="weighted"),     # quirk Q8: dropped = CIFAR code
      "lam": ml_collections.ConfigDict({
          "ema_decay": 0.995,
          "ema_update": "all",                    # quirk Q7: last_only = CIFAR code
          "ema_at": "first",                      # | all_layers
          "copy_init": "copy_of_target",          # | independent (ImageNet code, Q14)
          "leap_lists": "auto",                   # auto | published | generic
      }),
  }


def validate(mc, split, base) -> None:
  del base
  hilo.validate("mlm", mc.mlm, split)
  lam = mc.lam
  config_errors.unit("method.lam.ema_decay", lam.ema_decay)
  config_errors.choice("method.lam.ema_update", lam.ema_update, UPDATES)
  config_errors.choice("method.lam.ema_at", lam.ema_at, EMA_AT)
  config_errors.choice("method.lam.copy_init", lam.copy_init, COPY_INITS)
  config_errors.choice("method.lam.leap_lists", lam.leap_lists, LEAP_LISTS)
  if lam.leap_lists == "published" and published_leap_lists(split) is None:
    raise ConfigError(f"config.method.lam.leap_lists='published' but split {split.name!r} has no "
                      f"published MLAAN leap lists ({', '.join(PUBLISHED_PRESETS)}); "
                      "use 'auto' or 'generic'")
  if mc.mlm.k > split.num_modules - 1:
    raise ConfigError(f"config.method.mlm.k={mc.mlm.k} leaves no LAM term on "
                      f"{split.num_modules} modules (needs k <= {split.num_modules - 1})")


def published_leap_lists(split) -> list[tuple[str, ...]] | None:
  """Leap lists (block names) per module of a published split, or None if `split` is not one
  (same block layout and modules as a preset of `_PUBLISHED`). Labels "s.b" of the tables are
  read through the split's layout (`splits.Layout.block`)."""
  for preset, table in _PUBLISHED.items():
    ref = splits.PRESETS[preset]
    if (split.layout, split.module_ends) == (ref.layout, ref.module_ends):
      out = []
      for lo, hi, labels in table:
        out += [tuple(split.layout.block(b) for b in labels.split())] * (hi - lo + 1)
      return out
  return None


def generic_leap_list(plan: Plan, j: int) -> tuple[str, ...]:
  """[decision] Leap list of module j for splits without a published one: the first block of
  every later stage, then the last residual block, keeping only blocks after module j (the
  published lists' skeleton: early, intermediate and deep layers, ending at the last block)."""
  residual = list(plan.backbone.block_names[1:-1])  # between the stem and the classifier
  last = plan.modules[j][-1]
  after = residual[residual.index(last) + 1:] if last in residual else residual
  pos = {n: residual_position(n) for n in residual}  # (stage, index) from the block names
  if None in pos.values():
    raise ValueError(f"MLAAN generic leap lists need residual blocks s<s>b<b> between the stem "
                     f"and the classifier; backbone {plan.backbone.name} has {residual[:2]}...")
  stage = pos[last][0] if last in residual else 0
  out = [n for n in after if pos[n][1] == 0 and pos[n][0] > stage]
  out.append(residual[-1])
  return tuple(dict.fromkeys(n for n in out if n in after))


def leap_lists(plan: Plan, split, mode: str) -> list[tuple[str, ...]]:
  """Leap list per module 0..L−2 (`lam.leap_lists`: auto | published | generic)."""
  published = published_leap_lists(split) if mode != "generic" else None
  if published is not None:
    return published[:plan.num_modules - 1]
  return [generic_leap_list(plan, j) for j in range(plan.num_modules - 1)]


def _width_in(plan: Plan, block: str) -> int:
  names = plan.backbone.block_names
  return plan.backbone.module(names[names.index(block) - 1]).features


def _has_ema(l: int, ema_at: str) -> bool:
  return l == 0 or ema_at == "all_layers"


def _leap_layers(mdl: nn.Module, layers, ema_at: str, h, train: bool, first: int = 0):
  """LAM layers first, first+1, … on h [N,H,W,C]; parameters and statistics owned by `mdl`:
  aug{ℓ}, ema{ℓ}."""
  z = h
  for l, spec in enumerate(layers, start=first):
    y = apply_copy(mdl, f"aug{l}", spec, z, train, frozen=False)
    if _has_ema(l, ema_at):
      y = y + apply_copy(mdl, f"ema{l}", spec, z, train, frozen=True)
    z = y
  return z


class LeapLayer(nn.Module):
  """LAM layer ℓ of a LeapHead alone (aug{ℓ}, ema{ℓ}: the head's names): z_ℓ -> z_{ℓ+1}."""
  layer: BlockSpec
  index: int
  ema_at: str = "first"

  @property
  def variable_names(self) -> tuple[str, ...]:
    return (f"aug{self.index}",) + ((f"ema{self.index}",) if _has_ema(self.index, self.ema_at)
                                    else ())

  @nn.compact
  def __call__(self, h, train: bool = True):
    return _leap_layers(self, (self.layer,), self.ema_at, h, train, first=self.index)


class LeapHead(nn.Module):
  """LAM (§8.2) then `inner` (the CAN). h [N,H,W,C] (module j's cascade output) -> (loss, metrics).

  Params: aug{ℓ} (trainable copy of layers[ℓ]), ema{ℓ} (frozen EMA copy, ℓ = 0 or every ℓ with
  ema_at = "all_layers"), inner (the CAN). copy_sources: (param name, source block) pairs that
  `init_copies` sets to the source's initial parameters (copy_of_target). `trunk()`: the LAM
  layers one by one, which the sequential executor runs as programs of their own (split mode).
  """
  layers: tuple[BlockSpec, ...]
  inner: nn.Module
  ema_at: str = "first"
  copy_sources: tuple[tuple[str, str], ...] = ()

  def trunk(self) -> tuple[LeapLayer, ...]:
    return tuple(LeapLayer(spec, l, self.ema_at, parent=None) for l, spec in enumerate(self.layers))

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    return self.inner(_leap_layers(self, self.layers, self.ema_at, h, train), batch, train)


def rewrite(mc, plan: Plan, split, num_classes: int, base) -> Plan:
  """MLM cascades of window mlm.k with LAM on every cascade term (config.method.mlm / .lam)."""
  mlm, lam = mc.mlm, mc.lam
  lists = leap_lists(plan, split, lam.leap_lists)
  tail = lambda j: base.head(mc, num_classes, base.lambdas(
      mc, schedules.module_ratio(mlm.lambda_schedule, plan, j, split.paper_k)))
  backbone = plan.backbone
  k = mlm.k
  last_j = plan.num_modules - 2
  pairs = []

  def can(j):
    blocks = lists[j]
    if not blocks:
      raise ValueError(f"LAM: module {j} has an empty leap list")
    width_out = backbone.module(plan.modules[j][-1]).features
    if _width_in(plan, blocks[0]) != width_out:
      raise ValueError(f"LAM: leap block {blocks[0]} of module {j} expects "
                       f"{_width_in(plan, blocks[0])} channels, module {j} outputs {width_out}")
    ema_layers = range(len(blocks)) if lam.ema_at == "all_layers" else range(1)
    decay = lam.ema_decay if (lam.ema_update == "all" or j == last_j) else 1.0
    pairs.extend(EmaPair(f"cas{j}", (f"ema{l}",), blocks[l], decay) for l in ema_layers)
    sources = ()
    if lam.copy_init == "copy_of_target":
      sources = tuple((f"aug{l}", b) for l, b in enumerate(blocks))
      sources += tuple((f"ema{l}", blocks[l]) for l in ema_layers)
    return LeapHead(tuple(BlockSpec.of(backbone.module(b)) for b in blocks),
                    tail(j), lam.ema_at, sources)

  heads, terms = hilo.hilo_heads_and_terms(
      plan, k, mlm.w_ind, mlm.w_cas, tail, can, mlm.final_x_loss)
  desc = (f"{plan.description} + MLAAN (MLM k={k}, LAM update={lam.ema_update}, "
          f"copy_init={lam.copy_init}, r={lam.ema_decay})")
  return dataclasses.replace(plan, heads=heads, terms=terms, description=desc,
                             ema_pairs=plan.ema_pairs + tuple(pairs))


SPEC = Plugin("mlaan", rewrite, defaults, validate)
