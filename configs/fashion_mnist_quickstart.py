"""The embedded default: Fashion-MNIST from Debian's files, a CIFAR ResNet-8 cut into 3 modules.

Small enough for a 2-core CPU: 2 epochs on the first 10,000 training images, full test split,
cosine LR per step (to 0 at the end), and each evaluation also with BatchNorm statistics
re-estimated on 20 training batches (README "Two test errors").
`--config=configs/fashion_mnist_quickstart.py:<method>[,<plugin>]` picks the method (default
dgl) and an optional plug-in (hpff | mlaan | man; HPFF's patch nets run unrolled, as 7x7 maps
do not split evenly); scripts/quickstart.sh trains bp, dgl and dgl,hpff and prints one table.
"""
from configs import common


def get_config(arg: str = "dgl"):
  method, *plugin = (arg or "dgl").split(",")
  c = common.get_config(method or "dgl", plugin[0] if plugin else "none")
  c = common.cpu_fashion_mnist(c, epochs=2, depth=8)
  c.split.preset = "uniform_k3"
  common.set_selected(c.method, dgl_head="mlp-sr", infopro=dict(
      loss_mode="cross_entropy", ixx_1=1.0, ixy_1=1.0, ixx_2=0.0, ixy_2=1.0))
  return common.plugin_recipe(c, patch_loop="unrolled")
