"""InfoPro* K=2, ResNet-152 (InfoPro Table 4: 21.45 / 5.84; E2E 21.60 / 5.92).

InfoPro recipe; cut after layer2 block 5; loss 5·BCE + 1.0·CE (docs/methods.md §5.2)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r152", "infopro", "r152_k2_infopro", "infopro")
  c.method.infopro.ixy_1 = 1.0
  return c
