"""InfoPro baseline, ResNeXt-101 32x8d K=4, HPFF recipe (HPFF Table 2: 21.69 / 6.11)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("resnext101", "infopro", "resnext101_k4_hpff", "hpff")
  return c
