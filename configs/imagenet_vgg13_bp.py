"""BP baseline, VGG-13 (BN), HPFF recipe: batch 64, lr 0.025 (HPFF Table 2: 28.41 / 9.63)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("vgg13", "bp", "uniform_k1", "hpff")
  return c
