"""InfoPro baseline, ResNet-152 K=4, HPFF recipe (HPFF Table 2: 22.93 / 6.71)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r152", "infopro", "r152_k4_hpff", "hpff")
  return c
