"""InfoPro + MAN K=4, ResNet-101 (MAN paper: 21.73 top-1 [S]). No K=4 split is in the MAN code:
the HPFF K=4 split is used (docs/methods.md §9.2 [decision]); heads at 1024×14×14 use the 14-px
decoder."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r101", "infopro", "r101_k4_hpff", "man")
  c = imagenet_recipes.man(c)
  return c
