"""BP baseline, ResNet-34, MLAAN recipe: 150 epochs, batch 128, lr 0.05 (MLAAN Table II:
25.38 / 7.90)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r34", "bp", "uniform_k1", "mlaan")
  return c
