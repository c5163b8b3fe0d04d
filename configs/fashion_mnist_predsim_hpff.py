"""predsim + HPFF (HiLo k=2 + PFF) on Fashion-MNIST at CPU scale: ResNet-14 "blocks" split, 6
gradient-isolated modules (stem merged into 1.0); see
configs/plugin_grid.get_fashion_mnist_config."""
from configs import plugin_grid


def get_config():
  return plugin_grid.get_fashion_mnist_config("predsim", "hpff")
