"""BP baseline, ResNet-152, HPFF recipe (published E2E 21.60 / 5.92)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r152", "bp", "uniform_k1", "hpff")
  return c
