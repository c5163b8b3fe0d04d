"""The published-grid configs (issue 3 item 7): each cell of configs/cifar.py validates and builds
the plan it names, with the module count of the papers' split and the executor the benchmarks
chose for its size. The cells are the ResNet-32 "K=16" and ResNet-110 "K=55" grid: CIFAR-10 ×
{dgl, infopro, predsim} × {none, hpff, mlaan, man}, SVHN and STL-10 × the same bases × {none,
hpff, mlaan}, BP and (CIFAR-10) AugLocal."""
import pytest

from configs import cifar
from jax_local import config_validation, experiment, plugins
from jax_local.models import build_backbone

NETS = {"r32_k16": (32, 16), "r110_k55": (110, 55)}
GRID = sorted(
    [f"{d},{depth},1,bp" for d in ("cifar10", "svhn", "stl10") for depth in (32, 110)]
    + [f"cifar10,{depth},{k},auglocal" for depth, k in NETS.values()]
    + [f"{d},{depth},{k},{base}" + ("" if p == "none" else f",{p}")
       for d in ("cifar10", "svhn", "stl10") for depth, k in NETS.values()
       for base in ("dgl", "infopro", "predsim")
       for p in ("none", "hpff", "mlaan") + (("man",) if d == "cifar10" else ())])
# the module counts the papers' "K" builds (docs/methods.md §3.2): B for the bases and plugins,
# C minus AugLocal's merged top layers (d = 2 / 3) for AugLocal, BP one module
MODULES = {(32, "bp"): 1, (110, "bp"): 1, (32, "auglocal"): 14, (110, "auglocal"): 52,
           (32, None): 15, (110, None): 54}


def test_grid_is_complete():
  assert len(GRID) == 6 + 2 + 2 * 3 * (4 + 3 + 3) == len(set(GRID))
  with pytest.raises(ValueError, match="K must be 1"):
    cifar.get_config("cifar10,32,16,bp")
  with pytest.raises(ValueError, match="ResNet-32 K=8"):
    cifar.get_config("cifar10,32,4,dgl")


@pytest.mark.parametrize("arg", GRID)
def test_grid_config_builds_its_plan(arg):
  config = cifar.get_config(arg)
  config_validation.validate_config(config)
  split = experiment.split_of(config)
  dataset, depth, _, *name = arg.split(",")
  base = config.method.name
  plugin = plugins.plugin_name(config.method)
  assert (config.data.name, config.model.depth) == (dataset, int(depth))
  assert name == ([base] if plugin == "none" else [base, plugin])
  backbone = build_backbone(config.model, config.data.num_classes)
  plan = experiment.build_plan(config.method, backbone, split, config.data.num_classes)
  assert plan.num_modules == MODULES.get((int(depth), base), MODULES[(int(depth), None)])
  assert config.executor == ("fused" if base == "bp" else "sequential")
