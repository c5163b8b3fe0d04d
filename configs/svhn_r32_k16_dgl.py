"""dgl on svhn, ResNet-32 "K=16" (convention B: 15 modules), P400 recipe (docs/methods.md §10.5)."""
from configs import p400


def get_config():
  return p400.get_p400_config("svhn", 32, "dgl")
