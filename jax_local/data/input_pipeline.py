"""In-memory input pipeline for the small datasets (docs/methods.md §10.1-10.2, docs/jax_notes.md §6).

`build_dataset(config.data, seed)` loads a whole dataset into host memory as uint8 NHWC
arrays and int32 labels, then serves NumPy batches:

  train_batches(epoch, start_step, global_batch, drop_remainder)
      -> {"image": float32 [b, H, W, C] normalised, "label": int32 [b]}
  eval_batches(global_batch, split)   split "test" or "validation"
      -> {"image": float32 [b, H, W, C], "label": int32 [b], "mask": float32 [b]}

where b = global_batch / process_count is the local batch (each process gets its
contiguous slice of every global batch). The epoch permutation is a function of
(seed, epoch) and the augmentation parameters of a step a function of (seed, epoch, step),
sampled for the whole global batch, so resuming at (epoch, start_step) reproduces an
uninterrupted run exactly, whatever the process count.

`data.validation_size` = V > 0 carves a validation split of V examples out of the training set
(after `train_subset`): the same V examples whatever the seed (`carve_validation`), so runs of
every seed and method select their best checkpoint on the same images and never train on them.

Nothing is ever downloaded: a stock tfds dataset that is not prepared raises
FileNotFoundError with instructions; Fashion-MNIST is read from Debian's
`dataset-fashion-mnist` idx files with NumPy (`fashion_mnist_idx`).
TensorFlow/tfds are imported lazily, only when a tfds dataset is loaded.
"""
import logging
import math
import os
import time
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from jax_local.data import augment as augment_lib
from jax_local.data.catalog import NORMALISATION, TFDS_SPLITS  # the one dataset table

SUPPORTED = tuple(NORMALISATION)

Batch = dict


class Dataset:
  """A dataset held in host memory, serving normalised (and augmented) NumPy batches.

  Attributes:
    name: dataset name (a key of NORMALISATION).
    num_classes: number of classes of the data.
    image_shape: (H, W, C).
    mean, std: per-channel normalisation tuples (length C), [0, 1] pixel units.
    num_train, num_test: number of examples (after `train_subset` / `test_subset`).
    train_images, test_images: uint8 [N, H, W, C]; train_labels, test_labels: int32 [N].
    validation: (uint8 [V, H, W, C], int32 [V]) held out of training, or None.
  """

  def __init__(self, name: str, train: Tuple[np.ndarray, np.ndarray],
               test: Tuple[np.ndarray, np.ndarray], num_classes: int,
               mean: Sequence[float], std: Sequence[float], seed: int, augment: bool = True,
               process_index: int = 0, process_count: int = 1,
               validation: Optional[Tuple[np.ndarray, np.ndarray]] = None):
    self.name = name
    self.train_images, self.train_labels = train
    self.test_images, self.test_labels = test
    self.validation = validation
    self.num_classes = int(num_classes)
    self.mean = tuple(float(m) for m in mean)
    self.std = tuple(float(s) for s in std)
    self.seed = int(seed) % 2**63
    self.augment = bool(augment)
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index={process_index} not in [0, {process_count})")
    self.process_index, self.process_count = process_index, process_count
    if len(self.mean) != self.image_shape[-1] or len(self.std) != self.image_shape[-1]:
      raise ValueError(f"mean/std have {len(self.mean)} channels, images {self.image_shape}")
    # x_norm = x_uint8 * scale - shift  ==  (x / 255 - mean) / std
    self._scale = (1.0 / (255.0 * np.asarray(self.std))).astype(np.float32)
    self._shift = (np.asarray(self.mean) / np.asarray(self.std)).astype(np.float32)

  @property
  def image_shape(self) -> Tuple[int, int, int]:
    return tuple(int(d) for d in self.train_images.shape[1:])

  @property
  def num_train(self) -> int:
    return int(self.train_images.shape[0])

  @property
  def num_test(self) -> int:
    return int(self.test_images.shape[0])

  @property
  def num_validation(self) -> int:
    return 0 if self.validation is None else int(self.validation[1].shape[0])

  def _split(self, split: str) -> Tuple[np.ndarray, np.ndarray]:
    if split == "test":
      return self.test_images, self.test_labels
    if split == "validation" and self.validation is not None:
      return self.validation
    raise ValueError(f"no {split!r} split in {self!r} (splits: test"
                     f"{', validation' if self.validation is not None else ''})")

  def __repr__(self):
    return (f"Dataset({self.name}, train={self.num_train}, test={self.num_test}, "
            f"{f'validation={self.num_validation}, ' if self.validation is not None else ''}"
            f"image_shape={self.image_shape}, num_classes={self.num_classes})")

  def normalise(self, images: np.ndarray) -> np.ndarray:
    """uint8 [..., C] -> float32 [..., C], (x / 255 - mean) / std."""
    return images.astype(np.float32) * self._scale - self._shift

  def local_batch_size(self, global_batch: int) -> int:
    """Per-process batch size; raises ValueError unless process_count divides it."""
    if global_batch <= 0 or global_batch % self.process_count:
      raise ValueError(f"global batch {global_batch} must be a positive multiple of "
                       f"process_count={self.process_count}")
    return global_batch // self.process_count

  def _local_slice(self, n: int) -> slice:
    """Contiguous slice of this process in a global batch of n examples."""
    per = n // self.process_count
    return slice(self.process_index * per, (self.process_index + 1) * per)

  def steps_per_epoch(self, global_batch: int, drop_remainder: bool) -> int:
    """Number of training steps in one epoch (partial last batch counted unless dropped)."""
    if drop_remainder:
      return self.num_train // global_batch
    return math.ceil(self.num_train / global_batch)

  def last_batch_size(self, global_batch: int, drop_remainder: bool) -> int:
    """Global size of the partial last training batch of an epoch (0: every batch is full)."""
    return 0 if drop_remainder else self.num_train % global_batch

  def epoch_permutation(self, epoch: int) -> np.ndarray:
    """int64 [num_train]: the shuffle order of `epoch`, a function of (seed, epoch) only."""
    rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0, int(epoch)]))
    return rng.permutation(self.num_train)

  def train_batches(self, epoch: int, start_step: int, global_batch: int,
                    drop_remainder: bool) -> Iterator[Batch]:
    """Yields the local batches of steps start_step .. steps_per_epoch - 1 of `epoch`.

    Each batch: {"image": float32 [b, H, W, C] normalised, "label": int32 [b]} with
    b = global_batch / process_count, except the partial last global batch of size
    r = num_train % global_batch (when not drop_remainder), split as r / process_count.
    """
    self.local_batch_size(global_batch)
    steps = self.steps_per_epoch(global_batch, drop_remainder)
    last = 0 if drop_remainder else self.num_train % global_batch  # partial batch size
    if last % self.process_count:
      raise ValueError(
          f"the partial last batch ({last} examples) does not split over "
          f"{self.process_count} processes; use data.drop_remainder=True or another batch")
    if not 0 <= start_step <= steps:
      raise ValueError(f"start_step={start_step} not in [0, {steps}]")
    return self._train_iter(int(epoch), int(start_step), steps, global_batch)

  def _train_iter(self, epoch, start_step, steps, global_batch):
    perm = self.epoch_permutation(epoch)
    recipe = augment_lib.RECIPES[self.name]
    for step in range(start_step, steps):
      idx = perm[step * global_batch:(step + 1) * global_batch]
      local = self._local_slice(len(idx))
      images = self.train_images[idx[local]]
      if self.augment:
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, epoch, step]))
        params = augment_lib.sample_params(recipe, rng, len(idx))  # whole global batch
        images = augment_lib.apply(recipe, images, {k: v[local] for k, v in params.items()})
      yield {"image": self.normalise(images), "label": self.train_labels[idx[local]]}

  def eval_steps(self, global_batch: int, split: str = "test") -> int:
    """Number of evaluation batches covering `split` ("test" or "validation")."""
    return math.ceil(len(self._split(split)[1]) / global_batch)

  def eval_batches(self, global_batch: int, split: str = "test") -> Iterator[Batch]:
    """Yields `split` ("test" or "validation") in order, in full local batches.

    Each batch: {"image": float32 [b, H, W, C], "label": int32 [b], "mask": float32 [b]}
    with b = global_batch / process_count. The last global batch is padded with zero
    images, label 0 and mask 0, so sum(mask) over all processes and batches = the split's size.
    """
    self.local_batch_size(global_batch)
    return self._eval_iter(global_batch, *self._split(split))

  def _eval_iter(self, global_batch, images, labels):
    local = self._local_slice(global_batch)
    for step in range(math.ceil(len(labels) / global_batch)):
      idx = np.arange(step * global_batch, (step + 1) * global_batch)[local]
      real = idx < len(labels)
      idx = np.where(real, idx, 0)
      image = np.where(real[:, None, None, None], self.normalise(images[idx]), 0.0)
      yield {"image": image.astype(np.float32),
             "label": np.where(real, labels[idx], 0).astype(np.int32),
             "mask": real.astype(np.float32)}


# ----------------------------------------------------------------------------- loading


def _cfg(data_config, field, default):
  value = getattr(data_config, field, default)
  return default if value is None else value


def _stack(examples) -> Tuple[np.ndarray, np.ndarray]:
  images = np.stack([np.asarray(e["image"], np.uint8) for e in examples])
  labels = np.asarray([e["label"] for e in examples], np.int32)
  return images, labels


def _read_tfds_split(builder, split: str, limit: int = 0) -> Tuple[np.ndarray, np.ndarray]:
  """Reads a prepared tfds split (its first `limit` examples if > 0): uint8 [N,H,W,C], int32 [N].

  Random-access (array_record) data are read without TensorFlow; other formats (the stock
  default, tfrecord) go through tf.data.
  """
  import tensorflow_datasets as tfds
  random_access = tfds.core.FileFormat.with_random_access()
  if set(builder.info.available_file_formats()) & random_access:
    source = builder.as_data_source(split=split)
    n = min(len(source), limit) if limit > 0 else len(source)
    examples = []
    for start in range(0, n, 8192):
      keys = list(range(start, min(start + 8192, n)))
      try:
        examples += source.__getitems__(keys)  # 4x faster than one by one
      except TypeError:  # the data source of tfds.testing.mock_data has a broken __getitems__
        examples += [source[k] for k in keys]
    return _stack(examples)
  images, labels = [], []
  ds = builder.as_dataset(split=split)
  for batch in tfds.as_numpy((ds.take(limit) if limit > 0 else ds).batch(1024)):
    images.append(batch["image"])
    labels.append(batch["label"])
  return np.concatenate(images).astype(np.uint8), np.concatenate(labels).astype(np.int32)


def _not_prepared_error(name: str, tfds_name: str, data_dir_root) -> FileNotFoundError:
  return FileNotFoundError(
      f"Dataset '{name}' (tfds '{tfds_name}') is not prepared in the tfds data dir "
      f"'{data_dir_root}', and this project never downloads data. Prepare it on a machine "
      "with internet access: python -c \"import tensorflow_datasets as tfds; "
      f"tfds.builder('{tfds_name}', data_dir='{data_dir_root}').download_and_prepare()\" "
      "and copy the directory here, or point --config.data.tfds_data_dir to a data dir "
      f"that already holds '{tfds_name}'.")


def _load_stock(name: str, data_dir: Optional[str], subset: int):
  """Loads a stock tfds dataset (cifar10 / svhn_cropped / stl10) without downloading."""
  import tensorflow_datasets as tfds
  tfds_name, train_split, test_split = TFDS_SPLITS[name]
  builder = tfds.builder(tfds_name, data_dir=data_dir)
  try:
    train = _read_tfds_split(builder, train_split, subset)
    test = _read_tfds_split(builder, test_split)
  except Exception as e:  # reading fails in various ways when nothing is prepared
    if not builder.is_prepared():
      raise _not_prepared_error(name, tfds_name, builder.data_dir_root) from e
    raise
  return train, test, builder.info.features["label"].num_classes


def _load_fashion_mnist(manual_dir: str, subset: int):
  """Loads Fashion-MNIST from Debian's idx files with NumPy (`fashion_mnist_idx`), in file
  order, the first `subset` training examples if > 0; no TensorFlow, no tfds, nothing written."""
  from jax_local.data import fashion_mnist_idx
  manual_dir = manual_dir or fashion_mnist_idx.DEFAULT_MANUAL_DIR
  missing = fashion_mnist_idx.missing_files(manual_dir)
  if missing:
    raise FileNotFoundError(
        f"Dataset 'fashion_mnist' is missing its source files {missing} in '{manual_dir}'. "
        "Install them with `apt-get install dataset-fashion-mnist` (they go to "
        "/usr/share/datasets/fashion-mnist) or set --config.data.manual_dir to a directory "
        "holding the four idx .gz files.")
  (train_x, train_y), (test_x, test_y) = (fashion_mnist_idx.read_split(manual_dir, s)
                                          for s in ("train", "test"))
  if subset > 0:
    train_x, train_y = train_x[:subset], train_y[:subset]
  return ((train_x, train_y.astype(np.int32)), (test_x, test_y.astype(np.int32)),
          fashion_mnist_idx.NUM_CLASSES)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # what tfds.ImageFolder lists


def _image_paths(root: str, split: str) -> list:
  """Every image file tfds.ImageFolder lists under root/split/<class>/."""
  split_dir = os.path.join(os.path.expanduser(root), split)
  classes = [c for c in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, c))]
  return sorted(os.path.join(split_dir, c, f) for c in classes
                for f in os.listdir(os.path.join(split_dir, c))
                if f.lower().endswith(IMAGE_SUFFIXES))


def _read_image_folder_split(builder, root: str, split: str, size: int,
                             on_bad_image: str = "fail"):
  """Decodes one ImageFolder split to uint8 [N, size, size, 3] (RGB), int32 [N].

  Files that cannot be read or decoded are named: ValueError listing their paths if
  on_bad_image == "fail", else a warning listing them and they are left out ("skip").
  """
  import tensorflow as tf
  import tensorflow_datasets as tfds

  def prep(ex):
    image = tf.io.decode_image(ex["image"], channels=3, expand_animations=False)
    if size > 0:  # bilinear with antialiasing, as torchvision's Resize on PIL images
      image = tf.image.resize(image, (size, size), antialias=True)
      image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return image, tf.cast(ex["label"], tf.int32), ex["image/filename"]

  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={"image": tfds.decode.SkipDecoding()})
  ds = ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()  # read/decode errors
  images, labels, names = [], [], []
  for image, label, name in tfds.as_numpy(ds.batch(256) if size > 0 else ds):
    images.append(image)
    labels.append(label)
    names.extend(np.atleast_1d(name))
  expected = builder.info.splits[split].num_examples
  if len(names) < expected:
    decoded = {n.decode() if isinstance(n, bytes) else str(n) for n in names}
    bad = [p for p in _image_paths(root, split) if p not in decoded]
    message = (f"image_folder split '{split}': {expected - len(names)} of {expected} image files "
               "cannot be read or decoded:\n  " + "\n  ".join(bad))
    if on_bad_image != "skip":
      raise ValueError(f"{message}\nFix or delete them, or set --config.data.on_bad_image=skip")
    from jax_local.run_log import LOG
    LOG.warning("%s\nskipping them (data.on_bad_image=skip)", message)
  if not names:
    raise ValueError(f"image_folder split '{split}' has no readable images")
  if size > 0:
    return np.concatenate(images), np.concatenate(labels).astype(np.int32)
  shapes = {im.shape for im in images}
  if len(shapes) > 1:
    raise ValueError(f"image_folder split '{split}' has images of several sizes "
                     f"{sorted(shapes)[:4]}...; set --config.data.image_size to resize them")
  return np.stack(images), np.asarray(labels, np.int32)


def _class_folders(root: str, split: str) -> set:
  split_dir = os.path.join(os.path.expanduser(root), split)
  if not os.path.isdir(split_dir):
    return set()
  return {c for c in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, c))}


def check_class_folders(root: str) -> None:
  """ValueError listing the differences unless train/ and test/ have the same class folder names
  (exactly, case included): labels are the sorted names of each split's own folders, so any
  difference would give the two splits different label meanings or class counts."""
  train, test = _class_folders(root, "train"), _class_folders(root, "test")
  if train and test and train != test:
    only = lambda a, b: ", ".join(sorted(a - b)) or "none"
    raise ValueError(f"image_folder '{root}': the class folders of train/ and test/ differ "
                     f"(names must match exactly, case included): only in train/: "
                     f"{only(train, test)}; only in test/: {only(test, train)}")


def _load_image_folder(root: str, image_size: int, num_classes: int, on_bad_image: str = "fail"):
  """Loads root/<train|test>/<class>/*.jpg|png via tfds.ImageFolder; both splits must have the
  same class folders (`check_class_folders`)."""
  if not root or not os.path.isdir(root):
    raise FileNotFoundError(
        f"image_folder: data.folder_root '{root}' is not a directory; expected "
        "root/<train|test>/<class>/*.jpg|png (set --config.data.folder_root)")
  check_class_folders(root)
  import tensorflow_datasets as tfds
  builder = tfds.ImageFolder(root)
  splits = set(builder.info.splits.keys())
  if not {"train", "test"} <= splits:
    raise FileNotFoundError(f"image_folder '{root}' needs train/ and test/ sub-directories, "
                            f"found splits {sorted(splits)}")
  names = builder.info.features["label"].names
  if len(names) != num_classes:
    raise ValueError(f"image_folder '{root}' has {len(names)} classes but "
                     f"config.data.num_classes = {num_classes}; set "
                     f"--config.data.num_classes={len(names)}")
  train = _read_image_folder_split(builder, root, "train", image_size, on_bad_image)
  test = _read_image_folder_split(builder, root, "test", image_size, on_bad_image)
  if train[0].shape[1:] != test[0].shape[1:]:
    raise ValueError(f"image_folder train images {train[0].shape[1:]} and test images "
                     f"{test[0].shape[1:]} differ; set --config.data.image_size")
  return train, test, len(names)


VALIDATION_SEED = 20240916
"""Seed of the permutation that picks the validation examples: fixed, not the run's seed."""


def carve_validation(train: Tuple[np.ndarray, np.ndarray], size: int):
  """(train without the validation examples, validation): `size` examples picked by a fixed
  permutation of the training set, both parts kept in their original order."""
  n = len(train[1])
  if not 0 < size < n:
    raise ValueError(f"config.data.validation_size={size} must be in [1, {n - 1}] for "
                     f"{n} training examples")
  held = np.zeros(n, bool)
  held[np.random.default_rng(VALIDATION_SEED).permutation(n)[:size]] = True
  return (train[0][~held], train[1][~held]), (train[0][held], train[1][held])


def build_dataset(data_config, seed: int, process_index: int = 0,
                  process_count: int = 1) -> Dataset:
  """Loads `data_config.name` into host memory and returns a `Dataset`.

  Args:
    data_config: `config.data` (configs/common.py): name, tfds_data_dir, manual_dir,
      folder_root, image_size, num_classes, train_subset, test_subset, validation_size,
      augment, on_bad_image.
    seed: base seed of shuffling and augmentation.
    process_index, process_count: this process's slice of every global batch.
  Raises:
    FileNotFoundError: the data are not available locally (message says how to get them).
    ValueError: unknown name; config num_classes below the data's class count (above is
      allowed for the tfds datasets, e.g. the STL-10 reference's 100 logits; image_folder
      requires equality); labels outside [0, num_classes); image_folder files that cannot be
      decoded, listed by path, unless data.on_bad_image == "skip".
  """
  name = data_config.name
  if name == "imagenet2012":  # streamed through tf.data, not held in memory
    from jax_local.data import imagenet
    return imagenet.build_imagenet(data_config, seed, process_index, process_count)
  if name not in SUPPORTED:
    raise ValueError(f"unknown dataset '{name}'; supported: {SUPPORTED}")
  data_dir = _cfg(data_config, "tfds_data_dir", "") or None
  num_classes = int(_cfg(data_config, "num_classes", 0))
  subset = int(_cfg(data_config, "train_subset", 0))
  t0 = time.time()
  if name == "fashion_mnist":
    train, test, n_cls = _load_fashion_mnist(_cfg(data_config, "manual_dir", ""), subset)
  elif name == "image_folder":
    train, test, n_cls = _load_image_folder(_cfg(data_config, "folder_root", ""),
                                            int(_cfg(data_config, "image_size", 0)), num_classes,
                                            _cfg(data_config, "on_bad_image", "fail"))
  else:
    train, test, n_cls = _load_stock(name, data_dir, subset)
  if num_classes and num_classes < n_cls:
    raise ValueError(f"dataset '{name}' has {n_cls} classes but config.data.num_classes = "
                     f"{num_classes}")
  for split, (_, labels) in (("train", train), ("test", test)):
    if len(labels) and not 0 <= labels.min() <= labels.max() < max(num_classes, n_cls):
      raise ValueError(f"dataset '{name}' {split} labels span [{labels.min()}, {labels.max()}] "
                       f"but there are {max(num_classes, n_cls)} classes "
                       "(config.data.num_classes)")
  if subset > 0:  # tfds builders already read only the first `subset` (image_folder: all)
    train = (train[0][:subset], train[1][:subset])
  test_subset = int(_cfg(data_config, "test_subset", 0))
  if test_subset > 0:  # smoke tests: evaluate on the first N test examples
    test = (test[0][:test_subset], test[1][:test_subset])
  validation = None
  validation_size = int(_cfg(data_config, "validation_size", 0))
  if validation_size > 0:
    train, validation = carve_validation(train, validation_size)
  mean, std = NORMALISATION[name]
  ds = Dataset(name, train, test, n_cls, mean, std, seed,
               augment=bool(_cfg(data_config, "augment", True)),
               process_index=process_index, process_count=process_count,
               validation=validation)
  logging.info("Loaded %r in %.1fs", ds, time.time() - t0)
  return ds
