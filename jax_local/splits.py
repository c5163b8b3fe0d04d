"""Splits of a CIFAR ResNet into gradient-isolated modules (docs/methods.md §3, §2.1, §6.3).

Block indexing. A CIFAR ResNet of depth 6n+2 (§2.1) is the ordered list of blocks
  0 = stem, then block s.b (stage s = 1..3, b = 0..n-1) at index 1 + (s-1)*n + b,
followed by the classifier (GAP+FC) at index 3n+1, which always belongs to the last module.

A `Split` stores, per module, the index of its last stem-or-residual block (`module_ends`); the
number of modules L is derived from it and never from the paper's K (§3.1 [decision]).

The three published conventions (§3.1) are parsed by separate constructors:
  A (InfoPro) / C (AugLocal): `from_split_points`, entries [s,b] (C: [s,b,layer_id]) mean
      "cut after block s.b"; [0,0] makes the stem its own module (always present in C lists).
  B (HPFF / MAN / MLAAN):     `from_module_ends`, entries are module ends (last block included),
      the final block is listed, and the stem is never alone. B's K is a dictionary key, not L:
      ResNet-32 "K=16" builds 15 modules, ResNet-110 "K=55" builds 54 (§3.1, quirk Q2).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Sequence

CONVENTIONS = ("A", "B", "C", "custom")


def blocks_per_stage(depth: int) -> int:
  """n of a CIFAR ResNet of depth 6n+2 (§2.1); raises ValueError naming `model.depth`."""
  if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
    raise ValueError(f"model.depth={depth!r} is not a CIFAR ResNet depth 6n+2 with n >= 1 "
                     "(e.g. 8, 14, 20, 32, 56, 110)")
  return (depth - 2) // 6


def block_index(depth: int, s: int, b: int) -> int:
  """Index of block s.b (stem = (0, 0)) in the ordered block list of §2.1."""
  n = blocks_per_stage(depth)
  if (s, b) == (0, 0):
    return 0
  if s not in (1, 2, 3) or not 0 <= b < n:
    raise ValueError(f"block {s}.{b} does not exist in ResNet-{depth} (stages 1..3, blocks 0..{n - 1})")
  return 1 + (s - 1) * n + b


def block_label(depth: int, idx: int) -> str:
  """"stem", "s.b" or "fc" for a block index (inverse of `block_index`)."""
  n = blocks_per_stage(depth)
  if idx == 0:
    return "stem"
  if idx == 3 * n + 1:
    return "fc"
  if not 0 < idx <= 3 * n:
    raise ValueError(f"block index {idx} outside 0..{3 * n + 1} for ResNet-{depth}")
  s, b = divmod(idx - 1, n)
  return f"{s + 1}.{b}"


@dataclasses.dataclass(frozen=True)
class Split:
  """A CIFAR ResNet cut into gradient-isolated modules (docs/methods.md §3.1 [decision]).

  `module_ends[i]` is the block index of the last stem-or-residual block of module i; the last
  entry is the final residual block 3n, and the classifier (index 3n+1) joins the last module.
  `paper_k` is the K printed in the paper / CLI, for reporting only; it is not always L.
  """
  name: str
  depth: int
  convention: str
  paper_k: int
  module_ends: tuple[int, ...]

  def __post_init__(self):
    n = blocks_per_stage(self.depth)
    ends = tuple(int(e) for e in self.module_ends)
    object.__setattr__(self, "module_ends", ends)
    if self.convention not in CONVENTIONS:
      raise ValueError(f"split {self.name}: convention={self.convention!r} not in {CONVENTIONS}")
    if not ends or ends[-1] != 3 * n:
      raise ValueError(f"split {self.name}: module_ends must end at the final residual block "
                       f"{3 * n} ({block_label(self.depth, 3 * n)}), got {ends}")
    if ends[0] < 0 or any(a >= b for a, b in zip(ends, ends[1:])):
      raise ValueError(f"split {self.name}: module_ends must be increasing and >= 0, got {ends}")

  @property
  def num_modules(self) -> int:
    """L, the number of modules actually built."""
    return len(self.module_ends)

  @property
  def num_blocks(self) -> int:
    """Stem plus residual blocks, 3n+1 (the classifier, index 3n+1, is not counted)."""
    return self.module_ends[-1] + 1

  @property
  def fc_index(self) -> int:
    """Block index of the classifier (GAP+FC); it belongs to the last module."""
    return self.num_blocks

  @property
  def stem_alone(self) -> bool:
    return self.module_ends[0] == 0

  @property
  def module_ranges(self) -> tuple[tuple[int, int], ...]:
    """Inclusive (first, last) stem-or-residual block indices per module (the fc is implied)."""
    firsts = (0,) + tuple(e + 1 for e in self.module_ends[:-1])
    return tuple(zip(firsts, self.module_ends))

  @property
  def residual_blocks_per_module(self) -> tuple[int, ...]:
    """Residual blocks per module, stem not counted: the bracketed numbers of the §3.2 table."""
    return tuple(b - a + 1 - (a == 0) for a, b in self.module_ranges)

  def module_labels(self) -> tuple[str, ...]:
    """Human-readable module contents, e.g. ("stem..1.0", "1.1", ..., "3.4+fc")."""
    out = []
    for a, b in self.module_ranges:
      la, lb = block_label(self.depth, a), block_label(self.depth, b)
      out.append(la if a == b else f"{la}..{lb}")
    out[-1] += "+fc"
    return tuple(out)

  def describe(self) -> str:
    """One line for logs, e.g. "r32_k16_hpff: paper K=16 -> 15 gradient-isolated modules: ..."."""
    L = self.num_modules
    noun = "gradient-isolated module" if L == 1 else "gradient-isolated modules"
    return (f"{self.name}: paper K={self.paper_k} -> {L} {noun}: "
            + " | ".join(self.module_labels()))


def _entry_index(depth: int, entry, convention: str) -> int:
  entry = tuple(int(v) for v in entry)
  if len(entry) == 3 and convention == "C":
    idx = block_index(depth, entry[0], entry[1])
    if entry[2] != idx:  # AugLocal's layer_id is the block index (layer 0 = stem, §6.3)
      raise ValueError(f"convention C entry {list(entry)}: layer_id should be {idx}")
    return idx
  if len(entry) != 2:
    extra = " or [s, b, layer_id]" if convention == "C" else ""
    raise ValueError(f"split entry {list(entry)} must be [s, b]{extra}")
  return block_index(depth, *entry)


def from_split_points(depth: int, points: Sequence[Sequence[int]], name: str, paper_k: int,
                      convention: str = "A") -> Split:
  """Convention A/C (§3.1): K-1 entries [s,b] ("cut after block s.b"), C also [s,b,layer_id].

  [0,0] makes the stem its own module; the last module is the rest plus GAP+FC.
  """
  n = blocks_per_stage(depth)
  cuts = [_entry_index(depth, p, convention) for p in points]
  if cuts and cuts[-1] >= 3 * n:
    raise ValueError(f"split {name}: cut after the final block {block_label(depth, 3 * n)} "
                     "leaves an empty last module (convention A/C lists K-1 split points)")
  return Split(name, depth, convention, paper_k, tuple(cuts) + (3 * n,))


def from_module_ends(depth: int, ends: Sequence[Sequence[int]], name: str, paper_k: int,
                     convention: str = "B") -> Split:
  """Convention B (§3.1): entries are module ends (last block included), the final block listed.

  The stem is never its own module: it is trained through module 0.
  """
  idx = tuple(_entry_index(depth, e, convention) for e in ends)
  if idx and idx[0] == 0:
    raise ValueError(f"split {name}: convention B never makes the stem its own module "
                     "([0,0] is not a valid module end)")
  return Split(name, depth, convention, paper_k, idx)


def _sizes_to_ends(sizes, start=0):
  ends, e = [], start - 1
  for s in sizes:
    e += s
    ends.append(e)
  return ends


def uniform(depth: int, num_modules: int, stem_alone: bool = False) -> Split:
  """Blocks split as evenly as possible into `num_modules` contiguous modules.

  Rule: the units are the 3n+1 blocks with the stem counted as one block (stem_alone=False), or
  the 3n residual blocks after a stem-only module 0 (stem_alone=True). Units are cut into groups
  of q = floor(U/G) and q+1, the smaller groups first. If that would leave the stem alone
  (stem_alone=False and q = 1), one (q+1)-group moves to the front. This reproduces r32_k2/k4/k8,
  r32_k16_infopro (stem_alone), r32_k16_hpff (L=15), r110_k4/k8/k16, r110_k55_hpff (L=54) and
  r110_k55_auglocal (L=55, stem_alone), but not r32_k3, r110_k2/k3/k32 or the r110b presets.
  """
  n = blocks_per_stage(depth)
  L = num_modules
  name = f"uniform_k{L}" + ("_stem" if stem_alone else "")
  max_l = 3 * n + 1 if stem_alone else 3 * n
  if isinstance(L, bool) or not isinstance(L, int) or L < (2 if stem_alone else 1) or L > max_l:
    raise ValueError(
        f"impossible split: {name} asks for {L} modules but ResNet-{depth} has a stem and {3 * n} "
        f"residual blocks, so {'2' if stem_alone else '1'}..{max_l} modules are possible "
        f"({'stem alone' if stem_alone else 'stem merged into module 0'})")
  if stem_alone:
    q, r = divmod(3 * n, L - 1)
    ends = [0] + _sizes_to_ends([q] * (L - 1 - r) + [q + 1] * r, start=1)
  else:
    q, r = divmod(3 * n + 1, L)
    sizes = [q] * (L - r) + [q + 1] * r
    if q == 1:  # r >= 1 here since L <= 3n; keep the stem with 1.0
      sizes = [q + 1] + [q] * (L - r) + [q + 1] * (r - 1)
    ends = _sizes_to_ends(sizes)
  return Split(name, depth, "custom", L, tuple(ends))


def one_block_per_module(depth: int, stem_alone: bool) -> Split:
  """Every residual block its own module; the stem alone (like C) or merged into 1.0 (like B)."""
  n = blocks_per_stage(depth)
  s = uniform(depth, 3 * n + 1 if stem_alone else 3 * n, stem_alone)
  return dataclasses.replace(s, name="blocks_stem" if stem_alone else "blocks")


# ---------------------------------------------------------------------------------------------
# Published CIFAR presets (§3.2). Raw entries as in the reference configs:
# A: `IP Experiments on CIFAR-SVHN-STL10/networks/configs.py:2-46`;
# B: `HPFF Exp on CIFAR_SVHN_STL/network/config.py:10-30`; C: `AL networks/configs.py`.

def _residual(n, stem=False, last=True):
  """[[0,0]]? + [[s,b] for every residual block], optionally without the final block."""
  out = [[0, 0]] if stem else []
  out += [[s, b] for s in (1, 2, 3) for b in range(n)]
  return out if last else out[:-1]


def _with_layer_ids(depth, entries):
  return [[s, b, block_index(depth, s, b)] for s, b in entries]


_A_RAW = {  # (depth, paper K) -> split points
    (32, 2): [[2, 1]],
    (32, 3): [[1, 4], [2, 4]],
    (32, 4): [[1, 2], [2, 1], [3, 0]],
    (32, 8): [[1, 0], [1, 2], [1, 4], [2, 1], [2, 3], [3, 0], [3, 2]],
    (32, 16): _residual(5, stem=True, last=False),
    (110, 2): [[2, 8]],
    (110, 3): [[1, 17], [2, 17]],
    (110, 4): [[1, 11], [2, 7], [3, 3]],
    (110, 8): [[1, 4], [1, 11], [2, 0], [2, 7], [2, 14], [3, 3], [3, 10]],
    (110, 16): [[1, 1], [1, 4], [1, 7], [1, 10], [1, 13], [1, 16],
                [2, 1], [2, 4], [2, 7], [2, 11], [2, 15], [3, 1], [3, 5], [3, 9], [3, 13]],
}
_A_BALANCED_RAW = {  # InfoPro* (balanced memory), ResNet-110: (dataset, K) -> split points
    ("cifar10", 2): [[1, 14]], ("cifar10", 3): [[1, 9], [2, 2]],
    ("cifar10", 4): [[1, 6], [1, 14], [2, 8]], ("stl10", 3): [[1, 8], [2, 1]],
}
_B_RAW = {  # (depth, paper K) -> module ends; K=2/3/4/8/16 of ResNet-110 and K<=8 of ResNet-32
    # equal A's lists plus the final entry (ResNet-32 K=16 does not: B has no [0,0]).
    (32, 8): _A_RAW[(32, 8)] + [[3, 4]],
    (32, 16): _residual(5),
    (110, 32): [[1, 1], [1, 2], [1, 4], [1, 5], [1, 7], [1, 9], [1, 11], [1, 13], [1, 14], [1, 16],
                [1, 17], [2, 1], [2, 2], [2, 4], [2, 5], [2, 7], [2, 9], [2, 11], [2, 13], [2, 14],
                [2, 16], [2, 17], [3, 1], [3, 3], [3, 4], [3, 6], [3, 7], [3, 9], [3, 11], [3, 13],
                [3, 15], [3, 17]],
    (110, 55): _residual(18),
}
_C_RAW = {  # (depth, paper K) -> [s, b, layer_id] split points: stem alone, then one block each
    (32, 16): _with_layer_ids(32, _residual(5, stem=True, last=False)),
    (110, 55): _with_layer_ids(110, _residual(18, stem=True, last=False)),
}


def _build_presets() -> dict[str, Split]:
  A, B, C = from_split_points, from_module_ends, from_split_points
  specs = [  # (name, builder, depth, raw entries, paper K, convention, L of the §3.2 table)
      ("r32_k2", A, 32, _A_RAW[(32, 2)], 2, "A", 2),
      ("r32_k3", A, 32, _A_RAW[(32, 3)], 3, "A", 3),
      ("r32_k4", A, 32, _A_RAW[(32, 4)], 4, "A", 4),
      ("r32_k8", A, 32, _A_RAW[(32, 8)], 8, "A", 8),
      ("r32_k8_hpff", B, 32, _B_RAW[(32, 8)], 8, "B", 8),        # same modules as r32_k8
      ("r32_k16_infopro", A, 32, _A_RAW[(32, 16)], 16, "A", 16),
      ("r32_k16_auglocal", C, 32, _C_RAW[(32, 16)], 16, "C", 16),  # same modules as *_infopro
      ("r32_k16_hpff", B, 32, _B_RAW[(32, 16)], 16, "B", 15),
      ("r110_k2", A, 110, _A_RAW[(110, 2)], 2, "A", 2),
      ("r110_k3", A, 110, _A_RAW[(110, 3)], 3, "A", 3),
      ("r110_k4", A, 110, _A_RAW[(110, 4)], 4, "A", 4),
      ("r110_k8", A, 110, _A_RAW[(110, 8)], 8, "A", 8),
      ("r110_k16", A, 110, _A_RAW[(110, 16)], 16, "A", 16),
      ("r110_k32", B, 110, _B_RAW[(110, 32)], 32, "B", 32),
      ("r110_k32_hpff", B, 110, _B_RAW[(110, 32)], 32, "B", 32),  # alias of r110_k32
      ("r110_k55_hpff", B, 110, _B_RAW[(110, 55)], 55, "B", 54),
      ("r110_k55_auglocal", C, 110, _C_RAW[(110, 55)], 55, "C", 55),
      ("r110b_k2", A, 110, _A_BALANCED_RAW[("cifar10", 2)], 2, "A", 2),  # CIFAR-10 and STL-10
      ("r110b_k3", A, 110, _A_BALANCED_RAW[("cifar10", 3)], 3, "A", 3),  # CIFAR-10
      ("r110b_k3_stl", A, 110, _A_BALANCED_RAW[("stl10", 3)], 3, "A", 3),
      ("r110b_k4", A, 110, _A_BALANCED_RAW[("cifar10", 4)], 4, "A", 4),  # CIFAR-10 and STL-10
  ]
  presets = {}
  for name, build, depth, raw, k, conv, L in specs:
    split = build(depth, raw, name, k, conv)
    if split.num_modules != L:
      raise AssertionError(f"preset {name}: built {split.num_modules} modules, §3.2 says {L}")
    presets[name] = split
  return presets


PRESETS: dict[str, Split] = _build_presets()
GENERIC_NAMES = ("uniform_k<L>", "uniform_k<L>_stem", "blocks", "blocks_stem")


def get_split(preset: str, depth: int, arch: str = "cifar_resnet") -> Split:
  """Resolves `config.split.preset` for a ResNet of `model.depth`.

  Names: a key of PRESETS (fixed depth), `uniform_k<L>` / `uniform_k<L>_stem` (`uniform`, any
  depth; BP is `uniform_k1`), `blocks` / `blocks_stem` (`one_block_per_module`, any depth).
  Other archs (ImageNet ResNets/ResNeXts, VGG) resolve in `jax_local.splits_imagenet` (§3.3).
  """
  if arch != "cifar_resnet":
    from jax_local import splits_imagenet  # imports this module
    return splits_imagenet.get_split(preset, arch, depth)
  blocks_per_stage(depth)
  if preset in PRESETS:
    split = PRESETS[preset]
    if split.depth != depth:
      raise ValueError(f"split.preset={preset!r} is for ResNet-{split.depth} but model.depth={depth}")
    return split
  if preset in ("blocks", "blocks_stem"):
    return one_block_per_module(depth, stem_alone=preset == "blocks_stem")
  m = re.fullmatch(r"uniform_k(\d+)(_stem)?", str(preset))
  if m:
    return uniform(depth, int(m.group(1)), stem_alone=bool(m.group(2)))
  raise ValueError(f"split.preset={preset!r} is unknown; valid names: "
                   f"{', '.join(sorted(PRESETS))}, {', '.join(GENERIC_NAMES)}")
