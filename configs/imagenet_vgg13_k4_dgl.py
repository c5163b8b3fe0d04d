"""DGL, VGG-13 K=4 (block_size 3: convs [3,3,3,1]), DGL recipe: 50 epochs, batch 256, lr 0.1
÷10 every 10 epochs (DGL paper: 67.8 % top-1 accuracy [S]; BP 66.6 %)."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("vgg13", "dgl", "vgg13_k4", "dgl")
  return c
