"""InfoPro + HPFF, ResNeXt-101 32x8d K=4, HPFF recipe: batch 64, lr 0.025 (HPFF Table 2:
19.94 / 5.09; BP 20.64)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("resnext101", "infopro", "resnext101_k4_hpff", "hpff")
  c = imagenet_recipes.hpff(c)
  return c
