"""Any row of the Fashion-MNIST plugin table:
`--config=configs/fashion_mnist_grid.py:<base>,<plugin>` (base: bp | greedy | dgl | infopro |
predsim | auglocal; plugin: none | hpff | mlaan | man; default "dgl,none"). Same network, split
(ResNet-14 "blocks": 6 gradient-isolated modules; AugLocal and BP differ, see
configs/plugin_grid.get_fashion_mnist_config), data and epochs for every row."""
from configs import plugin_grid


def get_config(arg: str = "dgl,none"):
  base, _, plugin = (arg or "dgl,none").partition(",")
  return plugin_grid.get_fashion_mnist_config(base, plugin or "none")
