"""MLAAN, ResNet-152 "K=51" = 50 modules, split [derived] (MLAAN Table II: 21.34 / 5.74)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r152", "greedy", "r152_k51_mlaan", "mlaan")
  c = imagenet_recipes.mlaan(c)
  return c
