"""InfoPro + HPFF, ResNet-101 K=4 (HPFF Table 2: 21.14 / 5.49 top-1/top-5; BP 22.03).

The users' main ImageNet command. HPFF recipe (docs/methods.md §10.8): 90 epochs, batch 128, lr 0.05,
cosine without warm-up, Nesterov, wd 1e-4; split [[3,0],[3,9],[3,17],[4,2]] (blocks [8,9,8,8])."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r101", "infopro", "r101_k4_hpff", "hpff")
  c = imagenet_recipes.hpff(c)
  return c
