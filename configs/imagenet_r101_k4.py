"""The users' main ImageNet command: InfoPro + HPFF, ResNet-101 K=4, the published row
`imagenet_r101_k4_infopro_hpff` (same as `configs/published.py:imagenet_r101_k4_infopro_hpff`).
HPFF recipe (docs/methods.md §10.8): 90 epochs, batch 128, lr 0.05, cosine without warm-up,
Nesterov, wd 1e-4; split [[3,0],[3,9],[3,17],[4,2]] (blocks [8,9,8,8])."""
from configs import published


def get_config():
  return published.get_config("imagenet_r101_k4_infopro_hpff")
