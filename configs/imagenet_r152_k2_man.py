"""InfoPro + MAN K=2, ResNet-152 (MAN README; split [[2,5],[4,2]]), 90 epochs, batch 128,
lr 0.05."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r152", "infopro", "r152_k2_man", "man")
  c = imagenet_recipes.man(c)
  return c
