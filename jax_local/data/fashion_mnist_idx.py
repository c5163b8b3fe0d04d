"""Fashion-MNIST from Debian's idx .gz files with NumPy alone (no TensorFlow, no tfds).

An idx file is a big-endian header, magic = 0x0000 08 D (0x08: uint8 data, D: number of
dimensions), then D uint32 sizes, then the uint8 payload in C order. Images: D = 3,
(N, 28, 28) -> uint8 [N, 28, 28, 1]; labels: D = 1, (N,) -> uint8 [N]. Debian's
`dataset-fashion-mnist` installs the four files in DEFAULT_MANUAL_DIR.
"""
import gzip
import os
import struct

import numpy as np

DEFAULT_MANUAL_DIR = "/usr/share/datasets/fashion-mnist"
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
               "Sneaker", "Bag", "Ankle boot")
NUM_CLASSES = len(CLASS_NAMES)


def read_idx(path: str) -> np.ndarray:
  """The uint8 array of an idx .gz file, shaped by its header; ValueError if the header is not
  a uint8 idx header or the payload size disagrees with it."""
  with gzip.open(path, "rb") as f:
    data = f.read()
  zero, dtype, ndim = struct.unpack(">HBB", data[:4])
  if zero != 0 or dtype != 0x08:
    raise ValueError(f"{path}: not a uint8 idx file (magic {data[:4].hex()})")
  shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
  payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
  if payload.size != int(np.prod(shape)):
    raise ValueError(f"{path}: header gives shape {shape} but the payload has {payload.size} "
                     "bytes")
  return payload.reshape(shape)


def missing_files(manual_dir: str) -> list:
  """Names of the four idx files that are not in `manual_dir`."""
  return [f for v in FILES.values() for f in v[:2]
          if not os.path.exists(os.path.join(manual_dir, f))]


def read_split(manual_dir: str, split: str):
  """Reads one split: images uint8 [N, 28, 28, 1], labels uint8 [N] (N of FILES[split])."""
  images_file, labels_file, n = FILES[split]
  images = read_idx(os.path.join(manual_dir, images_file))
  labels = read_idx(os.path.join(manual_dir, labels_file))
  if images.shape != (n, 28, 28) or labels.shape != (n,):
    raise ValueError(f"{images_file}, {labels_file}: expected {n} images of 28x28 and {n} "
                     f"labels, got {images.shape} and {labels.shape}")
  return images[..., None], labels
