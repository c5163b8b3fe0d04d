"""AugLocal on Fashion-MNIST at CPU scale: ResNet-14 "blocks_stem" split (7 layers), d=2 with the K
reduction: 5 gradient-isolated modules; see configs/plugin_grid.get_fashion_mnist_config."""
from configs import plugin_grid


def get_config():
  return plugin_grid.get_fashion_mnist_config("auglocal")
