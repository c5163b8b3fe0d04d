"""InfoPro* K=2, ResNet-101 (InfoPro Table 4: 21.85 / 5.89; E2E 22.03 / 5.93).

InfoPro recipe: 90 epochs, global batch 1024, lr 0.4; cut after layer2 block 0 (512×28×28);
loss 5·BCE + 0.75·CE with the InfoPro ImageNet decoder and classifier (docs/methods.md §4.6, §5.2)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r101", "infopro", "r101_k2_infopro", "infopro")
  return c
