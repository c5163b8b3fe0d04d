"""InfoPro + HPFF, ResNet-152 K=4, HPFF recipe (HPFF Table 2: 20.99 / 5.29; BP 21.60)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r152", "infopro", "r152_k4_hpff", "hpff")
  c = imagenet_recipes.hpff(c)
  return c
