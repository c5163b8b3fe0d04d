"""infopro on stl10, ResNet-110 "K=55" (convention B: 54 modules), P400 recipe (docs/methods.md §10.5)."""
from configs import p400


def get_config():
  return p400.get_p400_config("stl10", 110, "infopro")
