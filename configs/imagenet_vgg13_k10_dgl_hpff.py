"""DGL + HPFF, VGG-13 K=10, HPFF recipe (HPFF Table 2: 32.49 / 11.22).

No DGL+HPFF ImageNet code is published: HiLo k=2 with weights 0.001/0.999 and PFF on the
classifier with shared patch nets (docs/methods.md §7.4 [decision], "HPFF-style, project
reconstruction")."""
from configs import imagenet_recipes


def get_config():
  c = imagenet_recipes.get_imagenet_config("vgg13", "dgl", "vgg13_k10", "hpff")
  c.method.plugin = "hpff"
  c.method.hilo.lambda_schedule = "constant"
  c.method.pff.mode, c.method.pff.apply_to = "paper_shared_avg", "classifier"
  return c
