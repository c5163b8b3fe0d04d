"""Any published row: `--config=configs/published.py:<row>`, a name of
third_party/published_rows.csv (`python launch.py --list_configs` lists them with the papers'
numbers). CIFAR-10 / SVHN / STL-10 rows are cells of configs/cifar.py, ImageNet rows of
configs/imagenet.py."""
from configs import cifar, imagenet
from jax_local import published


def from_row(row: published.Row):
  """The config that reproduces `row`."""
  if row.dataset == "imagenet2012":
    return imagenet.from_row(row)
  return cifar.get_cifar_config(row.dataset, row.depth, row.k, row.method, row.plugin)


def get_config(name: str = "imagenet_r101_k4_infopro_hpff"):
  return from_row(published.get(name or "imagenet_r101_k4_infopro_hpff"))
