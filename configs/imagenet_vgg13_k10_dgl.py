"""DGL baseline, VGG-13 K=10 (one conv per module), HPFF recipe: batch 64, lr 0.025
(HPFF Table 2: 35.60 / 14.20)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("vgg13", "dgl", "vgg13_k10", "hpff")
  return c
