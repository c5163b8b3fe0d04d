"""The published-grid configs (issue 3 item 7): each validates and builds the plan it names, with
the module count of the papers' split and the executor the benchmarks chose for its size."""
import glob
import importlib
import os

import pytest

from jax_local import config_validation, methods, plugins
from jax_local.models import build_backbone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = sorted(os.path.basename(p)[:-3] for d in ("cifar10", "svhn", "stl10")
              for p in glob.glob(os.path.join(ROOT, "configs", f"{d}_r*_k*_*.py")))
# the module counts the papers' "K" builds (docs/methods.md §3.2): B for the bases and plugins,
# C minus AugLocal's merged top layers (d = 2 / 3) for AugLocal, BP one module
MODULES = {("r32_k16", "bp"): 1, ("r110_k55", "bp"): 1, ("r32_k16", "auglocal"): 14,
           ("r110_k55", "auglocal"): 52, ("r32_k16", None): 15, ("r110_k55", None): 54}


def test_grid_is_complete():
  for net in ("r32_k16", "r110_k55"):
    for base in ("dgl", "infopro", "predsim"):
      for plugin in ("", "_hpff", "_mlaan", "_man"):
        assert f"cifar10_{net}_{base}{plugin}" in GRID
      for d in ("svhn", "stl10"):
        for plugin in ("_hpff", "_mlaan"):
          assert f"{d}_{net}_{base}{plugin}" in GRID
    assert f"cifar10_{net}_auglocal" in GRID


@pytest.mark.parametrize("name", GRID)
def test_grid_config_builds_its_plan(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  split = config_validation.validate_config(config)
  net = "r32_k16" if "_r32_k16_" in name else "r110_k55"
  base = config.method.name
  plugin = plugins.plugin_name(config.method)
  assert name.endswith(base if plugin == "none" else f"{base}_{plugin}")
  backbone = build_backbone(config.model, config.data.num_classes)
  plan = methods.build_plan(config.method, backbone, split, config.data.num_classes)
  assert plan.num_modules == MODULES.get((net, base), MODULES[(net, None)])
  assert config.executor == ("fused" if base == "bp" else "sequential")
