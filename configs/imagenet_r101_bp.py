"""BP baseline, ResNet-101, HPFF recipe: 90 epochs, batch 128, lr 0.05 (published E2E
22.03 / 5.93)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r101", "bp", "uniform_k1", "hpff")
  return c
