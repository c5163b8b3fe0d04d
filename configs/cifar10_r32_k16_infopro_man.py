"""infopro + MAN (momentum auxiliary network) on CIFAR-10, ResNet-32 "K=16" (convention B: 15
gradient-isolated modules), P400 recipe (docs/methods.md §10.5; configs/plugin_grid.py)."""
from configs import plugin_grid


def get_config():
  return plugin_grid.get_plugin_config("cifar10", 32, "infopro", "man")
