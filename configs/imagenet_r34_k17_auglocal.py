"""AugLocal, ResNet-34 K=17 (stem alone, one block per module, last block + fc), aux depth 4,
no pyramid, no K reduction on ImageNet (docs/methods.md §6.3); 200 epochs, batch 1024, lr 0.4."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("r34", "auglocal", "r34_k17_auglocal", "auglocal")
  c.method.auglocal.aux_depth = 4
  c.method.auglocal.pyramid = False
  c.method.auglocal.subtract_depth_from_k = False
  return c
