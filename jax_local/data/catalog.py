"""One table of the datasets jax_local knows: every user of a dataset fact reads it from here.

Per dataset (`config.data.name`): the image shape (H, W, C) at the size trained on (an image
folder's depends on `data.image_size`, so None), the training-set size (None where it depends
on the folder), the number of classes, the per-channel normalisation (mean, std) in [0, 1] units
(docs/methods.md §10.2), and the stock tfds builder with its train and test splits (None for the
datasets read otherwise: Debian's Fashion-MNIST files, image folders, ImageNet's own pipeline),
and whether reading it imports TensorFlow (all but Fashion-MNIST, read with NumPy alone).
Importing this module imports nothing heavy.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  image_shape: tuple[int, int, int] | None
  num_train: int | None
  num_classes: int | None
  mean: tuple[float, ...]
  std: tuple[float, ...]
  tfds: tuple[str, str, str] | None = None   # (builder name, train split, test split)
  uses_tensorflow: bool = True


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DATASETS = {
    "fashion_mnist": DatasetInfo((28, 28, 1), 60000, 10, (0.286,), (0.353,),
                                 uses_tensorflow=False),
    "cifar10": DatasetInfo((32, 32, 3), 50000, 10, (125.3 / 255, 123.0 / 255, 113.9 / 255),
                           (63.0 / 255, 62.1 / 255, 66.7 / 255), ("cifar10", "train", "test")),
    # InfoPro family: SVHN without its `extra` split
    "svhn": DatasetInfo((32, 32, 3), 73257, 10, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                        ("svhn_cropped", "train", "test")),
    # the labelled 5,000 / 8,000 images
    "stl10": DatasetInfo((96, 96, 3), 5000, 10, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                         ("stl10", "train", "test")),
    "image_folder": DatasetInfo(None, None, None, IMAGENET_MEAN, IMAGENET_STD),
    "imagenet2012": DatasetInfo((224, 224, 3), 1281167, 1000, IMAGENET_MEAN, IMAGENET_STD),
}
NAMES = tuple(DATASETS)
TFDS_SPLITS = {name: d.tfds for name, d in DATASETS.items() if d.tfds is not None}
NORMALISATION = {name: (d.mean, d.std) for name, d in DATASETS.items()
                 if name != "imagenet2012"}   # ImageNet normalises in its own pipeline
