"""AugLocal on CIFAR-10, ResNet-110 K=55: 55 layers (convention C); d=3 and the K reduction leave 52
gradient-isolated modules, the last merging layers 51-54 + fc. P400 recipe (docs/methods.md §6.3,
§10.5)."""
from configs import plugin_grid


def get_config():
  return plugin_grid.get_auglocal_config("cifar10", 110)
