"""The published split presets as data (docs/methods.md §3.2 CIFAR, §3.3 ImageNet).

One row per preset: (name, arch, depth, convention, paper K, modules L, entries). `entries` are
written as in the reference configs and read by `jax_local.splits.preset` according to the
convention (§3.1):
  A / C   split points [s, b] ("cut after block s.b"; [0, 0]: the stem alone), C also
          [s, b, layer_id] with layer_id the block index;
  B       module ends [s, b] (last block included, the final block listed, the stem never alone);
  custom  module sizes in blocks (the stem counts as a block).
EVERY_BLOCK stands for one residual block per module: under A / C the list [[0, 0], 1.0, ...,
every block but the last] (stem alone), under B the list of every residual block (stem merged
into 1.0). L is the module count of the §3.2 / §3.3 tables; `splits` asserts it when building.
Nothing here imports from jax_local: the tables are plain data.
"""
from __future__ import annotations

from typing import NamedTuple

EVERY_BLOCK = "every_block"


class Row(NamedTuple):
  name: str
  arch: str          # config.model.arch whose block layout the entries index
  depth: int
  convention: str    # A | B | C | custom
  paper_k: int       # K printed in the paper / CLI (reporting only)
  modules: int       # L of the table: modules actually built
  entries: object    # list of entries (see the module docstring) or EVERY_BLOCK


# CIFAR (§3.2). A: `IP Experiments on CIFAR-SVHN-STL10/networks/configs.py:2-46`;
# B: `HPFF Exp on CIFAR_SVHN_STL/network/config.py:10-30`; C: `AL networks/configs.py`.
_A32_8 = [[1, 0], [1, 2], [1, 4], [2, 1], [2, 3], [3, 0], [3, 2]]
_B110_32 = [[1, 1], [1, 2], [1, 4], [1, 5], [1, 7], [1, 9], [1, 11], [1, 13], [1, 14], [1, 16],
            [1, 17], [2, 1], [2, 2], [2, 4], [2, 5], [2, 7], [2, 9], [2, 11], [2, 13], [2, 14],
            [2, 16], [2, 17], [3, 1], [3, 3], [3, 4], [3, 6], [3, 7], [3, 9], [3, 11], [3, 13],
            [3, 15], [3, 17]]
_CIFAR = "cifar_resnet"
CIFAR = (
    Row("r32_k2", _CIFAR, 32, "A", 2, 2, [[2, 1]]),
    Row("r32_k3", _CIFAR, 32, "A", 3, 3, [[1, 4], [2, 4]]),
    Row("r32_k4", _CIFAR, 32, "A", 4, 4, [[1, 2], [2, 1], [3, 0]]),
    Row("r32_k8", _CIFAR, 32, "A", 8, 8, _A32_8),
    Row("r32_k8_hpff", _CIFAR, 32, "B", 8, 8, _A32_8 + [[3, 4]]),  # same modules as r32_k8
    Row("r32_k16_infopro", _CIFAR, 32, "A", 16, 16, EVERY_BLOCK),
    Row("r32_k16_auglocal", _CIFAR, 32, "C", 16, 16, EVERY_BLOCK),  # same modules as *_infopro
    Row("r32_k16_hpff", _CIFAR, 32, "B", 16, 15, EVERY_BLOCK),
    Row("r110_k2", _CIFAR, 110, "A", 2, 2, [[2, 8]]),
    Row("r110_k3", _CIFAR, 110, "A", 3, 3, [[1, 17], [2, 17]]),
    Row("r110_k4", _CIFAR, 110, "A", 4, 4, [[1, 11], [2, 7], [3, 3]]),
    Row("r110_k8", _CIFAR, 110, "A", 8, 8,
        [[1, 4], [1, 11], [2, 0], [2, 7], [2, 14], [3, 3], [3, 10]]),
    Row("r110_k16", _CIFAR, 110, "A", 16, 16,
        [[1, 1], [1, 4], [1, 7], [1, 10], [1, 13], [1, 16], [2, 1], [2, 4], [2, 7], [2, 11],
         [2, 15], [3, 1], [3, 5], [3, 9], [3, 13]]),
    Row("r110_k32", _CIFAR, 110, "B", 32, 32, _B110_32),
    Row("r110_k32_hpff", _CIFAR, 110, "B", 32, 32, _B110_32),  # alias of r110_k32
    Row("r110_k55_hpff", _CIFAR, 110, "B", 55, 54, EVERY_BLOCK),
    Row("r110_k55_auglocal", _CIFAR, 110, "C", 55, 55, EVERY_BLOCK),
    # InfoPro* (balanced memory), ResNet-110; r110b_k2 / r110b_k4 serve CIFAR-10 and STL-10
    Row("r110b_k2", _CIFAR, 110, "A", 2, 2, [[1, 14]]),
    Row("r110b_k3", _CIFAR, 110, "A", 3, 3, [[1, 9], [2, 2]]),  # CIFAR-10
    Row("r110b_k3_stl", _CIFAR, 110, "A", 3, 3, [[1, 8], [2, 1]]),
    Row("r110b_k4", _CIFAR, 110, "A", 4, 4, [[1, 6], [1, 14], [2, 8]]),
)

# ImageNet (§3.3). HPFF: `HPFF Exp on Imagenet/networks/configs.py:1-22`; MAN
# `networks/configs.py`; MLAAN `configAux_new.py` keys 16 / 33 / 50 (R152 [derived]); DGL
# `imagenet_dgl` (first ⌈51/2⌉ = 26 of [stem, 50 blocks] for r152_k2_dgl; VGG block_size 1 / 3).
_K4 = [[3, 0], [3, 9], [3, 17], [4, 2]]
_K8 = [[2, 0], [3, 1], [3, 5], [3, 9], [3, 13], [3, 17], [3, 21], [4, 2]]
_MAN_K2_101 = [[2, 0], [4, 2]]
_R, _X = "imagenet_resnet", "imagenet_resnext"  # ResNeXt-101 has ResNet-101's block layout
IMAGENET = (
    Row("r101_k2_infopro", _R, 101, "A", 2, 2, [[2, 0]]),
    Row("r101_k2_man", _R, 101, "B", 2, 2, _MAN_K2_101),
    Row("r152_k2_infopro", _R, 152, "A", 2, 2, [[2, 5]]),
    Row("r152_k2_man", _R, 152, "B", 2, 2, [[2, 5], [4, 2]]),
    Row("resnext101_k2_infopro", _X, 101, "A", 2, 2, [[2, 2]]),
    Row("resnext101_k2_man", _X, 101, "B", 2, 2, _MAN_K2_101),
    Row("r101_k4_hpff", _R, 101, "B", 4, 4, _K4),
    Row("r152_k4_hpff", _R, 152, "B", 4, 4, _K4),
    Row("resnext101_k4_hpff", _X, 101, "B", 4, 4, _K4),
    Row("r101_k8_hpff", _R, 101, "B", 8, 8, _K8),
    Row("r152_k8_hpff", _R, 152, "B", 8, 8, _K8),
    Row("resnext101_k8_hpff", _X, 101, "B", 8, 8, _K8),
    Row("r34_k4_hpff", _R, 34, "B", 4, 4, [[2, 0], [3, 0], [3, 5], [4, 2]]),
    Row("r34_k17_mlaan", _R, 34, "B", 17, 16, EVERY_BLOCK),
    Row("r101_k34_mlaan", _R, 101, "B", 34, 33, EVERY_BLOCK),
    Row("r152_k51_mlaan", _R, 152, "B", 51, 50, EVERY_BLOCK),
    Row("r34_k17_auglocal", _R, 34, "C", 17, 17, EVERY_BLOCK),
    Row("r101_k34_auglocal", _R, 101, "C", 34, 34, EVERY_BLOCK),
    Row("r152_k2_dgl", _R, 152, "A", 2, 2, [[3, 13]]),
    Row("vgg13_k10", "vgg", 13, "custom", 10, 10, [1] * 10),  # one conv per module
    Row("vgg13_k4", "vgg", 13, "custom", 4, 4, [3, 3, 3, 1]),  # DGL block_size 3 [derived]
)

ROWS = CIFAR + IMAGENET
