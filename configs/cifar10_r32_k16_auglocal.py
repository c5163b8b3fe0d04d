"""AugLocal on CIFAR-10, ResNet-32 K=16: 16 layers (convention C: stem alone, one block each); d=2
and the K reduction leave 14 gradient-isolated modules, the last merging layers 13-15 + fc. P400
recipe (docs/methods.md §6.3, §10.5)."""
from configs import plugin_grid


def get_config():
  return plugin_grid.get_auglocal_config("cifar10", 32)
