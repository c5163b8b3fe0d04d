"""Splits of a backbone into gradient-isolated modules (docs/methods.md §3, §2.1-§2.3, §6.3).

Block layout. A split indexes the block names that the backbone itself produces (`Layout`, read
from `jax_local.models.build_backbone`): a CIFAR ResNet of depth 6n+2 is
[stem, s1b0 .. s3b{n-1}, fc], an ImageNet ResNet / ResNeXt with stages (n1..n4) is
[stem, s1b0 .. s4b{n4-1}, fc] (block s.b at index 1 + Σ_{t<s} n_t + b; ResNeXt-101 has
ResNet-101's layout), a VGG is [conv0 .. conv{n-1}, fc], each conv block carrying its preceding
max-pool. The classifier "fc" (last) always belongs to the last module.

A `Split` stores, per module, the index of its last non-classifier block (`module_ends`); the
number of modules L is derived from it and never from the paper's K (§3.1 [decision]).

The published conventions (§3.1) are parsed by separate constructors:
  A (InfoPro) / C (AugLocal): `from_split_points`, entries [s,b] (C: [s,b,layer_id]) mean
      "cut after block s.b"; [0,0] makes the stem its own module (always present in C lists).
  B (HPFF / MAN / MLAAN):     `from_module_ends`, entries are module ends (last block included),
      the final block is listed, and the stem is never alone. B's K is a dictionary key, not L:
      ResNet-32 "K=16" builds 15 modules, ResNet-110 "K=55" builds 54 (§3.1, quirk Q2).
  custom:                     `from_sizes`, consecutive modules of given block counts.
The published presets (§3.2 CIFAR, §3.3 ImageNet) are the rows of `jax_local.split_presets`;
`PRESETS` holds them built, each checked against the module count of its table.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import types
from typing import Sequence

from jax_local import models, split_presets
from jax_local.models.backbone import residual_name, residual_position

CONVENTIONS = ("A", "B", "C", "custom")
GENERIC_NAMES = ("uniform_k<L>", "uniform_k<L>_stem", "blocks", "blocks_stem")


@dataclasses.dataclass(frozen=True)
class Layout:
  """The ordered block names of a backbone (classifier last), as a split sees them.

  Two layouts are equal when their block names and depths are: ResNet-101 and ResNeXt-101 are,
  ResNet-34 and ResNet-50 (same names, other blocks) are not, so a preset for one never applies
  to the other. `arch` and `net` (the backbone's name) only label messages.
  """
  blocks: tuple[str, ...]
  depth: int
  arch: str = dataclasses.field(default="", compare=False)
  net: str = dataclasses.field(default="", compare=False)

  @property
  def has_stem(self) -> bool:
    return self.blocks[0] == "stem"

  @property
  def last(self) -> int:
    """Index of the last block before the classifier (the end of the last module)."""
    return len(self.blocks) - 2

  def index(self, s: int, b: int) -> int:
    """Index of residual block s.b; (0, 0) is the stem."""
    if (s, b) == (0, 0) and self.has_stem:
      return 0
    name = residual_name(s, b)
    if name not in self.blocks:
      raise ValueError(f"block {s}.{b} does not exist in {self.net} (blocks "
                       f"{self.label(0)}, {self.label(1)} .. {self.label(self.last)}, fc)")
    return self.blocks.index(name)

  def label(self, idx: int) -> str:
    """"stem", "s.b", "conv<i>" or "fc" of a block index (inverse of `index`)."""
    if not 0 <= idx < len(self.blocks):
      raise ValueError(f"block index {idx} outside 0..{len(self.blocks) - 1} for {self.net}")
    name = self.blocks[idx]
    pos = residual_position(name)
    return f"{pos[0]}.{pos[1]}" if pos else name

  def block(self, label: str) -> str:
    """Block name of a label "stem" / "s.b" / "conv<i>" / "fc" (inverse of `label`)."""
    for idx in range(len(self.blocks)):
      if self.label(idx) == label:
        return self.blocks[idx]
    raise ValueError(f"block {label} does not exist in {self.net}")


@functools.lru_cache(maxsize=None)
def layout(arch: str, depth: int) -> Layout:
  """The block layout of backbone `arch` / `depth`, read from the backbone the trainer builds.

  Raises ValueError naming `model.arch` / `model.depth` for an unknown backbone.
  """
  model = types.SimpleNamespace(arch=arch, depth=depth, shortcut="projection")
  backbone = models.build_backbone(model, num_classes=1)
  return Layout(backbone.block_names, depth, arch, _display_name(backbone.name))


def _display_name(name: str) -> str:
  """"resnet110" -> "ResNet-110", "resnext101" -> "ResNeXt-101", "vgg13" -> "VGG-13"."""
  m = re.fullmatch(r"([a-z]+)(\d+)", name)
  if not m:
    return name
  family = {"resnet": "ResNet", "resnext": "ResNeXt", "vgg": "VGG"}.get(m.group(1), m.group(1))
  return f"{family}-{m.group(2)}"


@dataclasses.dataclass(frozen=True)
class Split:
  """A backbone cut into gradient-isolated modules (docs/methods.md §3.1 [decision]).

  `module_ends[i]` is the block index of the last non-classifier block of module i; the last
  entry is `layout.last`, and the classifier joins the last module. `paper_k` is the K printed
  in the paper / CLI, for reporting only; it is not always L.
  """
  name: str
  layout: Layout
  convention: str
  paper_k: int
  module_ends: tuple[int, ...]

  def __post_init__(self):
    ends = tuple(int(e) for e in self.module_ends)
    object.__setattr__(self, "module_ends", ends)
    last = self.layout.last
    if self.convention not in CONVENTIONS:
      raise ValueError(f"split {self.name}: convention={self.convention!r} not in {CONVENTIONS}")
    if not ends or ends[-1] != last:
      raise ValueError(f"split {self.name}: module_ends must end at the final block {last} "
                       f"({self.layout.label(last)}) before the classifier, got {ends}")
    if ends[0] < 0 or any(a >= b for a, b in zip(ends, ends[1:])):
      raise ValueError(f"split {self.name}: module_ends must be increasing and >= 0, got {ends}")

  @property
  def num_modules(self) -> int:
    """L, the number of modules actually built."""
    return len(self.module_ends)

  @property
  def num_blocks(self) -> int:
    """Blocks before the classifier (stem and residual blocks, or a VGG's convs)."""
    return self.module_ends[-1] + 1

  @property
  def fc_index(self) -> int:
    """Block index of the classifier; it belongs to the last module."""
    return self.num_blocks

  @property
  def stem_alone(self) -> bool:
    return self.layout.has_stem and self.module_ends[0] == 0

  @property
  def module_ranges(self) -> tuple[tuple[int, int], ...]:
    """Inclusive (first, last) non-classifier block indices per module (the fc is implied)."""
    firsts = (0,) + tuple(e + 1 for e in self.module_ends[:-1])
    return tuple(zip(firsts, self.module_ends))

  @property
  def residual_blocks_per_module(self) -> tuple[int, ...]:
    """Blocks per module, the stem not counted (VGG: convs): the bracketed numbers of §3.2."""
    stem = self.layout.has_stem
    return tuple(b - a + 1 - (stem and a == 0) for a, b in self.module_ranges)

  def module_labels(self) -> tuple[str, ...]:
    """Human-readable module contents, e.g. ("stem..1.0", "1.1", ..., "3.4+fc")."""
    lab = self.layout.label
    out = [lab(a) if a == b else f"{lab(a)}..{lab(b)}" for a, b in self.module_ranges]
    out[-1] += "+fc"
    return tuple(out)

  def describe(self) -> str:
    """One line for logs, e.g. "r32_k16_hpff: paper K=16 -> 15 gradient-isolated modules: ..."."""
    L = self.num_modules
    noun = "gradient-isolated module" if L == 1 else "gradient-isolated modules"
    return (f"{self.name}: paper K={self.paper_k} -> {L} {noun}: "
            + " | ".join(self.module_labels()))


def _entry_index(lay: Layout, entry, convention: str) -> int:
  entry = tuple(int(v) for v in entry)
  if len(entry) == 3 and convention == "C":
    idx = lay.index(entry[0], entry[1])
    if entry[2] != idx:  # AugLocal's layer_id is the block index (layer 0 = stem, §6.3)
      raise ValueError(f"convention C entry {list(entry)}: layer_id should be {idx}")
    return idx
  if len(entry) != 2:
    extra = " or [s, b, layer_id]" if convention == "C" else ""
    raise ValueError(f"split entry {list(entry)} must be [s, b]{extra}")
  return lay.index(*entry)


def from_split_points(lay: Layout, points: Sequence[Sequence[int]], name: str, paper_k: int,
                      convention: str = "A") -> Split:
  """Convention A/C (§3.1): K-1 entries [s,b] ("cut after block s.b"), C also [s,b,layer_id].

  [0,0] makes the stem its own module; the last module is the rest plus the classifier.
  """
  cuts = [_entry_index(lay, p, convention) for p in points]
  if cuts and cuts[-1] >= lay.last:
    raise ValueError(f"split {name}: cut after the final block {lay.label(lay.last)} "
                     "leaves an empty last module (convention A/C lists K-1 split points)")
  return Split(name, lay, convention, paper_k, tuple(cuts) + (lay.last,))


def from_module_ends(lay: Layout, ends: Sequence[Sequence[int]], name: str, paper_k: int,
                     convention: str = "B") -> Split:
  """Convention B (§3.1): entries are module ends (last block included), the final block listed.

  The stem is never its own module: it is trained through module 0.
  """
  idx = tuple(_entry_index(lay, e, convention) for e in ends)
  if idx and idx[0] == 0:
    raise ValueError(f"split {name}: convention B never makes the stem its own module "
                     "([0,0] is not a valid module end)")
  return Split(name, lay, convention, paper_k, idx)


def from_sizes(lay: Layout, sizes: Sequence[int], name: str, paper_k: int,
               convention: str = "custom") -> Split:
  """Consecutive modules of `sizes` blocks each (a stem counts as a block)."""
  ends, e = [], -1
  for s in sizes:
    e += s
    ends.append(e)
  return Split(name, lay, convention, paper_k, tuple(ends))


def uniform(lay: Layout, num_modules: int, stem_alone: bool = False) -> Split:
  """Blocks split as evenly as possible into `num_modules` contiguous modules.

  Rule: the units are the U blocks before the classifier with a stem counted as one block
  (stem_alone=False), or the U-1 blocks after a stem-only module 0 (stem_alone=True). Units are
  cut into groups of q = floor(U/G) and q+1, the smaller groups first. If that would leave the
  stem alone (stem_alone=False and q = 1), one (q+1)-group moves to the front. On CIFAR this
  reproduces r32_k2/k4/k8, r32_k16_infopro (stem_alone), r32_k16_hpff (L=15), r110_k4/k8/k16,
  r110_k55_hpff (L=54) and r110_k55_auglocal (L=55, stem_alone), but not r32_k3, r110_k2/k3/k32
  or the r110b presets (§3.2).
  """
  L, n = num_modules, lay.last + 1
  name = f"uniform_k{L}" + ("_stem" if stem_alone else "")
  if stem_alone and not lay.has_stem:
    raise ValueError(f"impossible split: {name}: {lay.net} has no stem")
  lo, hi = (2, n) if stem_alone else (1, n - lay.has_stem)
  if isinstance(L, bool) or not isinstance(L, int) or not lo <= L <= hi:
    raise ValueError(
        f"impossible split: {name} asks for {L} modules but {lay.net} has {n} blocks before the "
        f"classifier{' (stem included)' if lay.has_stem else ''}, so {lo}..{hi} modules are "
        f"possible ({'stem alone' if stem_alone else 'stem merged into module 0'})")
  if stem_alone:
    q, r = divmod(n - 1, L - 1)
    sizes = [1] + [q] * (L - 1 - r) + [q + 1] * r
  else:
    q, r = divmod(n, L)
    sizes = [q] * (L - r) + [q + 1] * r
    if lay.has_stem and q == 1 and r:  # keep the stem with 1.0
      sizes = [q + 1] + [q] * (L - r) + [q + 1] * (r - 1)
  return from_sizes(lay, sizes, name, L)


def one_block_per_module(lay: Layout, stem_alone: bool) -> Split:
  """Every block its own module; a stem alone (like C) or merged into 1.0 (like B)."""
  n = lay.last + 1
  s = uniform(lay, n if stem_alone or not lay.has_stem else n - 1, stem_alone)
  return dataclasses.replace(s, name="blocks_stem" if stem_alone else "blocks")


_BUILDERS = {"A": from_split_points, "C": from_split_points, "B": from_module_ends,
             "custom": from_sizes}


def preset(row: split_presets.Row) -> Split:
  """The Split of one row of `jax_local.split_presets`, checked against its module count."""
  lay = layout(row.arch, row.depth)
  entries = row.entries
  if entries == split_presets.EVERY_BLOCK:
    residual = [list(p) for p in map(residual_position, lay.blocks) if p]
    entries = residual if row.convention == "B" else [[0, 0]] + residual[:-1]
  split = _BUILDERS[row.convention](lay, entries, row.name, row.paper_k, row.convention)
  if split.num_modules != row.modules:
    raise AssertionError(f"preset {row.name}: built {split.num_modules} modules, the table of "
                         f"docs/methods.md §3.2 / §3.3 says {row.modules}")
  return split


PRESETS: dict[str, Split] = {row.name: preset(row) for row in split_presets.ROWS}


def get_split(preset_name: str, depth: int, arch: str = "cifar_resnet") -> Split:
  """Resolves `config.split.preset` for the backbone `model.arch` / `model.depth`.

  Names: a key of PRESETS (fixed backbone layout), `uniform_k<L>` / `uniform_k<L>_stem`
  (`uniform`, any backbone; BP is `uniform_k1`), `blocks` / `blocks_stem`
  (`one_block_per_module`, any backbone; the `_stem` forms need a stem).
  """
  lay = layout(arch, depth)
  valid = sorted(n for n, s in PRESETS.items() if s.layout == lay) + list(GENERIC_NAMES)
  if preset_name in PRESETS:
    split = PRESETS[preset_name]
    if split.layout != lay:
      raise ValueError(f"split.preset={preset_name!r} is for {split.layout.net} "
                       f"(model.arch={split.layout.arch!r}, model.depth={split.layout.depth}) "
                       f"but the model is {lay.net} (model.arch={arch!r}, model.depth={depth}); "
                       f"valid: {', '.join(valid)}")
    return split
  if preset_name in ("blocks", "blocks_stem"):
    return one_block_per_module(lay, stem_alone=preset_name == "blocks_stem")
  m = re.fullmatch(r"uniform_k(\d+)(_stem)?", str(preset_name))
  if m:
    return uniform(lay, int(m.group(1)), stem_alone=bool(m.group(2)))
  others = sorted(n for n, s in PRESETS.items() if s.layout.arch == arch and n not in valid)
  raise ValueError(f"split.preset={preset_name!r} is unknown for {lay.net}; valid names: "
                   f"{', '.join(valid)}" + (f" (presets of other depths: {', '.join(others)})"
                                           if others else ""))
