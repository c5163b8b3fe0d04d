"""dgl + HPFF (HiLo k=2 + PFF) on SVHN, ResNet-110 "K=55" (convention B: 54 gradient-isolated
modules), P400 recipe (docs/methods.md §10.5; configs/plugin_grid.py)."""
from configs import plugin_grid


def get_config():
  return plugin_grid.get_plugin_config("svhn", 110, "dgl", "hpff")
