"""BP baseline, ResNeXt-101 32x8d, HPFF recipe: batch 64, lr 0.025 (published E2E 20.64 / 5.40)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("resnext101", "bp", "uniform_k1", "hpff")
  return c
