"""InfoPro baseline, ResNet-101 K=4, HPFF recipe (HPFF Table 2: 22.81 / 6.54)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r101", "infopro", "r101_k4_hpff", "hpff")
  return c
