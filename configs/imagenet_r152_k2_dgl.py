"""DGL, ResNet-152 K=2 (stem..3.13 | rest), DGL recipe (DGL paper: 74.5 % accuracy [S];
BP 74.4 %)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r152", "dgl", "r152_k2_dgl", "dgl")
  return c
