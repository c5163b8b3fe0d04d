"""InfoPro + MAN K=4, ResNet-152 (MAN paper: 20.78 top-1 [S]); HPFF K=4 split (docs/methods.md §9.2)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r152", "infopro", "r152_k4_hpff", "man")
  c = imagenet_recipes.man(c)
  return c
