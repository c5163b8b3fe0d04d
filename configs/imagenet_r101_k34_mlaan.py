"""MLAAN, ResNet-101 "K=34" = 33 modules (MLAAN Table II: 21.69 / 5.72; BP 22.03 / 5.93)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r101", "greedy", "r101_k34_mlaan", "mlaan")
  c = imagenet_recipes.mlaan(c)
  return c
