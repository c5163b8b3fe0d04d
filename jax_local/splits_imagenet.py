"""ImageNet ResNets, ResNeXts and VGGs cut into gradient-isolated modules (docs/methods.md §3.3).

Block indexing follows the backbones: a ResNet with stages (n1..n4) is [stem, 1.0 .. 4.{n4-1}, fc],
block s.b at index 1 + Σ_{t<s} n_t + b (ResNeXt-101 shares ResNet-101's indices); a VGG is
[conv0 .. conv{n-1}, fc], each conv block carrying its preceding max-pool (§2.3). As for CIFAR
(`jax_local.splits`), `module_ends[i]` is the index of the last non-classifier block of module i,
the classifier joins the last module, and L is never derived from the paper's K.

Published presets (§3.3; raw entries as in the reference configs):
  r101_k2_infopro / r101_k2_man  cut after 2.0 (A) / ends [[2,0],[4,2]] (B): stem..2.0 | 2.1..4.2
  r152_k2_infopro / r152_k2_man  cut after 2.5: stem..2.5 | 2.6..4.2 (cut output 512×28×28)
  resnext101_k2_infopro          cut after 2.2; resnext101_k2_man: ends [[2,0],[4,2]] (as r101)
  {r101,r152,resnext101}_k4_hpff [[3,0],[3,9],[3,17],[4,2]]: R101 blocks [8,9,8,8], R152 [12,9,8,21]
  {r101,r152,resnext101}_k8_hpff [[2,0],[3,1],[3,5],[3,9],[3,13],[3,17],[3,21],[4,2]]
  r34_k4_hpff                    [[2,0],[3,0],[3,5],[4,2]]
  r34_k17_mlaan / r101_k34_mlaan / r152_k51_mlaan   B, one block each, stem merged into 1.0:
                                 16 / 33 / 50 modules (MLAAN keys 16 / 33 / 50; R152 [derived])
  r34_k17_auglocal / r101_k34_auglocal   C: stem alone, one block each, last block + fc (17 / 34)
  r152_k2_dgl                    first ⌈51/2⌉ = 26 of [stem, 50 blocks]: stem..3.13 | 3.14..4.2
  vgg13_k10                      one conv per module (DGL block_size 1, HPFF's DGL baseline)
  vgg13_k4                       DGL block_size 3: conv groups [3,3,3,1] [derived]
Generic names, any ImageNet arch: `uniform_k<L>` (BP: uniform_k1), `uniform_k<L>_stem`, `blocks`,
`blocks_stem` (ResNets only for the `_stem` forms), with the CIFAR rule of `splits.uniform`.
"""
from __future__ import annotations

import dataclasses
import re

from jax_local import splits
from jax_local.models.imagenet_resnet import stage_sizes
from jax_local.models.vgg import CFGS as VGG_CFGS

FAMILIES = {"imagenet_resnet": "resnet", "imagenet_resnext": "resnet", "vgg": "vgg"}


def num_blocks(family: str, depth: int) -> int:
  """Blocks before the classifier: stem + residual blocks (ResNet) or convs (VGG)."""
  if family == "vgg":
    if depth not in VGG_CFGS:
      raise ValueError(f"model.depth={depth!r} is not a VGG depth "
                       f"({', '.join(map(str, VGG_CFGS))})")
    return sum(v != "M" for v in VGG_CFGS[depth])
  return 1 + sum(stage_sizes(depth))


def block_index(depth: int, s: int, b: int) -> int:
  """Index of ResNet block s.b (stem = (0, 0))."""
  sizes = stage_sizes(depth)
  if (s, b) == (0, 0):
    return 0
  if not 1 <= s <= 4 or not 0 <= b < sizes[s - 1]:
    raise ValueError(f"block {s}.{b} does not exist in ImageNet ResNet-{depth} (stages {sizes})")
  return 1 + sum(sizes[:s - 1]) + b


def block_label(family: str, depth: int, idx: int) -> str:
  """"stem" / "s.b" / "conv<i>" / "fc" of a block index."""
  n = num_blocks(family, depth)
  if idx == n:
    return "fc"
  if not 0 <= idx < n:
    raise ValueError(f"block index {idx} outside 0..{n}")
  if family == "vgg":
    return f"conv{idx}"
  if idx == 0:
    return "stem"
  sizes, rest = stage_sizes(depth), idx - 1
  for s, n_s in enumerate(sizes, start=1):
    if rest < n_s:
      return f"{s}.{rest}"
    rest -= n_s
  raise AssertionError(idx)


@dataclasses.dataclass(frozen=True)
class ImageNetSplit(splits.Split):
  """`splits.Split` for the ImageNet backbones; `family` is "resnet" or "vgg"."""
  family: str = "resnet"

  def __post_init__(self):
    n = num_blocks(self.family, self.depth)
    ends = tuple(int(e) for e in self.module_ends)
    object.__setattr__(self, "module_ends", ends)
    if not ends or ends[-1] != n - 1:
      raise ValueError(f"split {self.name}: module_ends must end at block {n - 1}, got {ends}")
    if ends[0] < 0 or any(a >= b for a, b in zip(ends, ends[1:])):
      raise ValueError(f"split {self.name}: module_ends must be increasing and >= 0, got {ends}")

  @property
  def stem_alone(self) -> bool:
    return self.family == "resnet" and self.module_ends[0] == 0

  @property
  def residual_blocks_per_module(self) -> tuple[int, ...]:
    """Blocks per module, the stem not counted (VGG: convs per module)."""
    skip_stem = self.family == "resnet"
    return tuple(b - a + 1 - (skip_stem and a == 0) for a, b in self.module_ranges)

  def module_labels(self) -> tuple[str, ...]:
    lab = lambda i: block_label(self.family, self.depth, i)
    out = [lab(a) if a == b else f"{lab(a)}..{lab(b)}" for a, b in self.module_ranges]
    out[-1] += "+fc"
    return tuple(out)


def from_split_points(depth, points, name, paper_k, convention="A") -> ImageNetSplit:
  """Convention A/C: [s,b] (C: [s,b,layer_id]) = cut after block s.b; [0,0] = stem alone."""
  cuts = []
  for p in points:
    idx = block_index(depth, p[0], p[1])
    if len(p) == 3 and p[2] != idx:
      raise ValueError(f"convention C entry {list(p)}: layer_id should be {idx}")
    cuts.append(idx)
  last = num_blocks("resnet", depth) - 1
  return ImageNetSplit(name, depth, convention, paper_k, tuple(cuts) + (last,))


def from_module_ends(depth, ends, name, paper_k, convention="B") -> ImageNetSplit:
  """Convention B: module ends [s,b], last block included; the stem is never alone."""
  idx = tuple(block_index(depth, s, b) for s, b in ends)
  if idx and idx[0] == 0:
    raise ValueError(f"split {name}: convention B never makes the stem its own module")
  return ImageNetSplit(name, depth, convention, paper_k, idx)


def from_sizes(family, depth, sizes, name, paper_k, convention="custom") -> ImageNetSplit:
  """Consecutive modules of `sizes` blocks (the stem counts as a block)."""
  ends, e = [], -1
  for s in sizes:
    e += s
    ends.append(e)
  return ImageNetSplit(name, depth, convention, paper_k, tuple(ends), family)


def _blocks(depth, stem=False, last=True):
  sizes = stage_sizes(depth)
  out = [[0, 0]] if stem else []
  out += [[s, b] for s, n in enumerate(sizes, start=1) for b in range(n)]
  return out if last else out[:-1]


_K4 = [[3, 0], [3, 9], [3, 17], [4, 2]]   # `HPFF Exp on Imagenet/networks/configs.py:1-22`
_K8 = [[2, 0], [3, 1], [3, 5], [3, 9], [3, 13], [3, 17], [3, 21], [4, 2]]
_MAN_K2 = {101: [[2, 0], [4, 2]], 152: [[2, 5], [4, 2]]}  # MAN `networks/configs.py`


def _build_presets() -> dict[str, ImageNetSplit]:
  A, B = from_split_points, from_module_ends
  specs = [  # (name, builder, depth, raw, paper K, convention, L of §3.3)
      ("r101_k2_infopro", A, 101, [[2, 0]], 2, "A", 2),
      ("r101_k2_man", B, 101, _MAN_K2[101], 2, "B", 2),
      ("r152_k2_infopro", A, 152, [[2, 5]], 2, "A", 2),
      ("r152_k2_man", B, 152, _MAN_K2[152], 2, "B", 2),
      ("resnext101_k2_infopro", A, 101, [[2, 2]], 2, "A", 2),
      ("resnext101_k2_man", B, 101, _MAN_K2[101], 2, "B", 2),
      ("r101_k4_hpff", B, 101, _K4, 4, "B", 4),
      ("r152_k4_hpff", B, 152, _K4, 4, "B", 4),
      ("resnext101_k4_hpff", B, 101, _K4, 4, "B", 4),
      ("r101_k8_hpff", B, 101, _K8, 8, "B", 8),
      ("r152_k8_hpff", B, 152, _K8, 8, "B", 8),
      ("resnext101_k8_hpff", B, 101, _K8, 8, "B", 8),
      ("r34_k4_hpff", B, 34, [[2, 0], [3, 0], [3, 5], [4, 2]], 4, "B", 4),
      ("r34_k17_mlaan", B, 34, _blocks(34), 17, "B", 16),
      ("r101_k34_mlaan", B, 101, _blocks(101), 34, "B", 33),
      ("r152_k51_mlaan", B, 152, _blocks(152), 51, "B", 50),
      ("r34_k17_auglocal", A, 34, [p + [block_index(34, *p)] for p in _blocks(34, True, False)],
       17, "C", 17),
      ("r101_k34_auglocal", A, 101, [p + [block_index(101, *p)] for p in _blocks(101, True, False)],
       34, "C", 34),
      ("r152_k2_dgl", A, 152, [[3, 13]], 2, "A", 2),
  ]
  presets = {}
  for name, build, depth, raw, k, conv, L in specs:
    presets[name] = build(depth, raw, name, k, conv)
  presets["vgg13_k10"] = from_sizes("vgg", 13, [1] * 10, "vgg13_k10", 10, "custom")
  presets["vgg13_k4"] = from_sizes("vgg", 13, [3, 3, 3, 1], "vgg13_k4", 4, "custom")
  expected = {name: L for name, *_, L in specs} | {"vgg13_k10": 10, "vgg13_k4": 4}
  for name, split in presets.items():
    if split.num_modules != expected[name]:
      raise AssertionError(f"preset {name}: built {split.num_modules} modules, §3.3 says "
                           f"{expected[name]}")
  return presets


PRESETS: dict[str, ImageNetSplit] = _build_presets()
NUM_MODULES = {name: s.num_modules for name, s in PRESETS.items()}


def uniform(family: str, depth: int, num_modules: int, stem_alone: bool = False) -> ImageNetSplit:
  """Contiguous modules as even as possible: the rule of `splits.uniform` (smaller groups first;
  a ResNet's stem counts as a block and is kept with 1.0 unless `stem_alone`)."""
  n, L = num_blocks(family, depth), num_modules
  name = f"uniform_k{L}" + ("_stem" if stem_alone else "")
  if stem_alone and family != "resnet":
    raise ValueError(f"{name}: a VGG has no stem")
  lo, hi = (2, n) if stem_alone else (1, n - (family == "resnet"))
  if isinstance(L, bool) or not isinstance(L, int) or not lo <= L <= hi:
    raise ValueError(f"impossible split: {name} on {family}{depth} ({n} blocks incl. the stem): "
                     f"{lo}..{hi} modules are possible")
  if stem_alone:
    q, r = divmod(n - 1, L - 1)
    sizes = [1] + [q] * (L - 1 - r) + [q + 1] * r
  else:
    q, r = divmod(n, L)
    sizes = [q] * (L - r) + [q + 1] * r
    if family == "resnet" and q == 1 and r:
      sizes = [q + 1] + [q] * (L - r) + [q + 1] * (r - 1)
  return from_sizes(family, depth, sizes, name, L)


def get_split(preset: str, arch: str, depth: int) -> ImageNetSplit:
  """Resolves `config.split.preset` for an ImageNet arch (see the module docstring)."""
  if arch not in FAMILIES:
    raise ValueError(f"model.arch={arch!r} is not an ImageNet arch ({', '.join(FAMILIES)})")
  family = FAMILIES[arch]
  num_blocks(family, depth)
  if preset in PRESETS:
    split = PRESETS[preset]
    if (split.family, split.depth) != (family, depth):
      raise ValueError(f"split.preset={preset!r} is for {split.family}{split.depth}, but the "
                       f"model is {arch} depth {depth}")
    return split
  if preset in ("blocks", "blocks_stem"):
    stem = preset == "blocks_stem"
    n = num_blocks(family, depth)
    s = uniform(family, depth, n if stem or family == "vgg" else n - 1, stem)
    return dataclasses.replace(s, name=preset)
  m = re.fullmatch(r"uniform_k(\d+)(_stem)?", str(preset))
  if m:
    return uniform(family, depth, int(m.group(1)), bool(m.group(2)))
  valid = sorted(n for n, s in PRESETS.items() if (s.family, s.depth) == (family, depth))
  raise ValueError(f"split.preset={preset!r} is unknown for {arch} depth {depth}; valid: "
                   f"{', '.join(valid + list(splits.GENERIC_NAMES))}")
