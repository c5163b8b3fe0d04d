"""InfoPro* K=2, ResNeXt-101 32x8d (InfoPro Table 4: 20.35 / 5.28; E2E 20.64 / 5.40).

InfoPro recipe at batch 512 / lr 0.2 (the paper's batch; see imagenet_recipes); cut after layer2
block 2; loss 5·BCE + 0.75·CE."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("resnext101", "infopro", "resnext101_k2_infopro",
                                           "infopro")
  return c
