"""ImageNet-1k: tfds `imagenet2012` via tf.data (docs/methods.md §10.1-10.2, §10.8; docs/jax_notes.md §6).

`build_imagenet(config.data, seed, process_index, process_count)` returns an `ImageNetDataset`
with the API of `input_pipeline.Dataset` (name, num_classes, image_shape, mean, std, num_train,
num_test, steps_per_epoch, train_batches, eval_steps, eval_batches), so the trainer uses it as is:

  train_batches(epoch, start_step, global_batch, drop_remainder)
      -> {"image": float32 [b, S, S, 3] normalised, "label": int32 [b]},  b = global_batch / P
  eval_batches(global_batch)
      -> {"image": float32 [b, S, S, 3], "label": int32 [b], "mask": float32 [b]}

Train (§10.2): RandomResizedCrop S (scale 0.08-1, ratio 3/4-4/3, torchvision's rule: 10 tries, then
a centre crop at the clamped ratio) decoded with `decode_and_crop_jpeg`, bilinear resize with
antialiasing (PIL-like), horizontal flip p=0.5. Eval: resize the shorter side to S·256/224 (256)
keeping the aspect ratio, centre crop S (224). Both normalise with the ImageNet mean/std.
S = data.image_size (0 -> 224). data.augment=False trains on the eval transform.

Sharding (per process P, index i): training reads `train[i·s:(i+1)·s]` with s = ⌊N/P⌋ (every process
gets the same number of steps; the last N mod P < P examples are never read). Evaluation reads
`validation[⌊iN/P⌋:⌊(i+1)N/P⌋]` and pads every process to the same number of local batches with
mask 0, so the masks cover each validation example exactly once. The global batch of a step is
the union of the processes' local batches.

Determinism: the file order, the shuffle buffer (`data.shuffle_buffer`, default 16384 encoded
JPEGs, about 1.8 GB of host memory per process) and every example's crop and flip are functions
of (seed, epoch, process index, position in the epoch); `train_batches(epoch, start_step, ...)`
skips start_step batches before decoding, so a resumed run sees exactly the batches of an
uninterrupted one (for the same process count).

Nothing is downloaded: if the data dir holds no prepared `imagenet2012`, a FileNotFoundError says
how to prepare it from ILSVRC2012_img_train.tar / ILSVRC2012_img_val.tar. TensorFlow and tfds are
imported when a dataset is built, not at import.
"""
from __future__ import annotations

import collections
import logging
import math
import os
from typing import Iterator

import numpy as np

from jax_local.data import catalog

NAME = "imagenet2012"
MEAN, STD = catalog.IMAGENET_MEAN, catalog.IMAGENET_STD
IMAGE_SIZE = 224
RESIZE_RATIO = 256 / 224
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


def train_shard(n: int, process_index: int, process_count: int) -> tuple[int, int]:
  """[start, stop) of this process's training examples: equal shards of ⌊n/P⌋."""
  s = n // process_count
  return process_index * s, (process_index + 1) * s


def eval_shard(n: int, process_index: int, process_count: int) -> tuple[int, int]:
  """[start, stop) of this process's evaluation examples; the shards tile [0, n)."""
  return process_index * n // process_count, (process_index + 1) * n // process_count


def not_prepared_error(data_dir: str, manual_dir: str) -> FileNotFoundError:
  """The error raised when `imagenet2012` is not prepared in `data_dir`."""
  have = [f for f in MANUAL_FILES if os.path.exists(os.path.join(manual_dir, f))]
  found = (f"Both archives are in '{manual_dir}', so only the preparation step is left."
           if len(have) == 2 else
           f"Found {have or 'none'} of {list(MANUAL_FILES)} in the manual dir '{manual_dir}'.")
  return FileNotFoundError(
      f"Dataset 'imagenet2012' is not prepared in the tfds data dir '{data_dir}', and this project "
      "never downloads data. ImageNet needs manual preparation: download "
      f"{' and '.join(MANUAL_FILES)} from https://image-net.org (after accepting its terms), put "
      f"them in a manual dir (default '{manual_dir}'), then run once, on one machine: "
      "python -c \"import tensorflow_datasets as tfds; tfds.builder('imagenet2012', "
      f"data_dir='{data_dir}').download_and_prepare(download_config=tfds.download.DownloadConfig("
      f"manual_dir='{manual_dir}'))\" (hours, ~150 GB of TFRecords), and point "
      "--config.data.tfds_data_dir (and --config.data.manual_dir) at those directories. " + found)


def _seed_int(*words: int) -> int:
  """A 31-bit integer seed mixed from `words` (numpy SeedSequence)."""
  return int(np.random.SeedSequence([int(w) % 2**63 for w in words]).generate_state(1)[0] >> 1)


def _crop_window(hw, seed):
  """torchvision RandomResizedCrop window (y, x, h, w) of an image of size hw = (H, W), int32.

  10 tries: area ~ U(0.08, 1)·H·W, log-ratio ~ U(log 3/4, log 4/3), w = round(√(area·r)),
  h = round(√(area/r)); the first that fits is placed uniformly. Otherwise a centre crop of the
  whole image at the ratio clamped to [3/4, 4/3].
  """
  import tensorflow as tf
  h, w = tf.cast(hw[0], tf.float32), tf.cast(hw[1], tf.float32)
  seeds = tf.random.experimental.stateless_split(seed, 3)
  area = h * w * tf.random.stateless_uniform([10], seeds[0], SCALE[0], SCALE[1])
  log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
  ratio = tf.exp(tf.random.stateless_uniform([10], seeds[1], log_lo, log_hi))
  cw, ch = tf.round(tf.sqrt(area * ratio)), tf.round(tf.sqrt(area / ratio))
  fits = (cw > 0) & (ch > 0) & (cw <= w) & (ch <= h)
  first = tf.argmax(tf.cast(fits, tf.int32))
  in_ratio = w / h
  fb_w = tf.where(in_ratio > RATIO[1], tf.round(h * RATIO[1]), w)
  fb_h = tf.where(in_ratio < RATIO[0], tf.round(w / RATIO[0]), h)
  ok = tf.reduce_any(fits)
  ch, cw = tf.where(ok, ch[first], fb_h), tf.where(ok, cw[first], fb_w)
  u = tf.random.stateless_uniform([2], seeds[2])
  y = tf.where(ok, tf.floor(u[0] * (h - ch + 1)), tf.floor((h - ch) / 2))
  x = tf.where(ok, tf.floor(u[1] * (w - cw + 1)), tf.floor((w - cw) / 2))
  return tf.cast(tf.stack([y, x, ch, cw]), tf.int32)


def _normalise(image):
  import tensorflow as tf
  return (image / 255.0 - tf.constant(MEAN)) / tf.constant(STD)


def train_transform(image_bytes, seed, size: int):
  """JPEG bytes -> float32 [size, size, 3]: RandomResizedCrop + flip + normalise (§10.2)."""
  import tensorflow as tf
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  window = _crop_window(tf.image.extract_jpeg_shape(image_bytes)[:2], crop_seed)
  image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
  image = tf.image.resize(image, (size, size), "bilinear", antialias=True)
  flip = tf.random.stateless_uniform([], flip_seed) < 0.5
  image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
  return _normalise(image)


def eval_transform(image_bytes, size: int):
  """JPEG bytes -> float32 [size, size, 3]: shorter side to size·256/224, centre crop, normalise."""
  import tensorflow as tf
  image = tf.io.decode_jpeg(image_bytes, channels=3)
  hw = tf.cast(tf.shape(image)[:2], tf.float32)
  short = round(size * RESIZE_RATIO)
  new_hw = tf.cast(tf.floor(hw * short / tf.reduce_min(hw)), tf.int32)
  new_hw = tf.where(hw == tf.reduce_min(hw), short, new_hw)  # torchvision: short side exact
  image = tf.image.resize(image, new_hw, "bilinear", antialias=True)
  top = tf.cast(tf.round((new_hw[0] - size) / 2), tf.int32)
  left = tf.cast(tf.round((new_hw[1] - size) / 2), tf.int32)
  return _normalise(image[top:top + size, left:left + size])


class ImageNetDataset:
  """tfds `imagenet2012` read per process through tf.data; API of `input_pipeline.Dataset`.

  Attributes: name, num_classes (1000), image_shape (S, S, 3), mean, std, num_train (training
  examples, after data.train_subset), num_test (validation examples), augment, seed.
  """

  validation = None  # nothing is held out of a streamed training set (data.validation_size = 0)

  def __init__(self, builder, num_train: int, num_test: int, seed: int,
               image_size: int = IMAGE_SIZE, augment: bool = True, shuffle_buffer: int = 16384,
               process_index: int = 0, process_count: int = 1):
    if not 0 <= process_index < process_count:
      raise ValueError(f"process_index={process_index} not in [0, {process_count})")
    self.builder = builder
    self.name = NAME
    self.num_classes = int(builder.info.features["label"].num_classes)
    self.image_shape = (image_size, image_size, 3)
    self.mean, self.std = MEAN, STD
    self.num_train, self.num_test = int(num_train), int(num_test)
    self.seed, self.augment = int(seed), bool(augment)
    self.shuffle_buffer = int(shuffle_buffer)
    self.process_index, self.process_count = process_index, process_count

  def __repr__(self):
    return (f"ImageNetDataset(train={self.num_train}, test={self.num_test}, image_shape="
            f"{self.image_shape}, process {self.process_index}/{self.process_count})")

  def local_batch_size(self, global_batch: int) -> int:
    if global_batch <= 0 or global_batch % self.process_count:
      raise ValueError(f"global batch {global_batch} must be a positive multiple of "
                       f"process_count={self.process_count}")
    return global_batch // self.process_count

  @property
  def shard_size(self) -> int:
    """Training examples read by each process per epoch, ⌊num_train / P⌋."""
    return self.num_train // self.process_count

  def steps_per_epoch(self, global_batch: int, drop_remainder: bool) -> int:
    """Steps per epoch, equal on every process (partial last batch counted unless dropped)."""
    b = self.local_batch_size(global_batch)
    return self.shard_size // b if drop_remainder else math.ceil(self.shard_size / b)

  def last_batch_size(self, global_batch: int, drop_remainder: bool) -> int:
    """Global size of the partial last training batch (P local ones of shard_size mod b)."""
    b = self.local_batch_size(global_batch)
    return 0 if drop_remainder else self.process_count * (self.shard_size % b)

  def _read(self, split: str, shuffle_seed: int | None):
    import tensorflow as tf
    import tensorflow_datasets as tfds
    options = tf.data.Options()
    options.deterministic = True
    read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed, options=options)
    return self.builder.as_dataset(split=split, shuffle_files=shuffle_seed is not None,
                                   decoders={"image": tfds.decode.SkipDecoding()},
                                   read_config=read_config)

  def train_batches(self, epoch: int, start_step: int, global_batch: int,
                    drop_remainder: bool) -> Iterator[dict]:
    """Yields the local batches of steps start_step .. steps_per_epoch - 1 of `epoch` (numpy)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds
    b = self.local_batch_size(global_batch)
    steps = self.steps_per_epoch(global_batch, drop_remainder)
    if not 0 <= start_step <= steps:
      raise ValueError(f"start_step={start_step} not in [0, {steps}]")
    start, stop = train_shard(self.num_train, self.process_index, self.process_count)
    epoch_seed = _seed_int(self.seed, epoch, self.process_index)
    size = self.image_shape[0]
    base = tf.constant([self.seed % 2**31, epoch_seed], tf.int64)

    def transform(index, example):
      if self.augment:
        seed = tf.random.experimental.stateless_fold_in(base, index)
        image = train_transform(example["image"], seed, size)
      else:
        image = eval_transform(example["image"], size)
      return {"image": image, "label": tf.cast(example["label"], tf.int32)}

    ds = self._read(f"train[{start}:{stop}]", epoch_seed)
    ds = ds.shuffle(self.shuffle_buffer, seed=epoch_seed, reshuffle_each_iteration=False)
    ds = ds.take(stop - start).enumerate().skip(start_step * b)
    ds = ds.map(transform, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(b, drop_remainder=drop_remainder).take(steps - start_step)
    return iter(tfds.as_numpy(ds.prefetch(tf.data.AUTOTUNE)))

  def eval_steps(self, global_batch: int) -> int:
    """Local evaluation batches per process (the same on every process)."""
    b = self.local_batch_size(global_batch)
    return math.ceil(math.ceil(self.num_test / self.process_count) / b)

  def eval_batches(self, global_batch: int, split: str = "test") -> Iterator[dict]:
    """Yields this process's shard of ImageNet's validation set, which serves as the test split
    ("test", the only split), in order, padded to `eval_steps` full batches.

    Padding: zero images, label 0, mask 0; over all processes sum(mask) = num_test.
    """
    if split != "test":
      raise ValueError(f"ImageNet has no {split!r} split here (data.validation_size must be 0)")
    b = self.local_batch_size(global_batch)
    return self._eval_iter(b, self.eval_steps(global_batch))

  def _eval_iter(self, b, steps):
    import tensorflow as tf
    import tensorflow_datasets as tfds
    start, stop = eval_shard(self.num_test, self.process_index, self.process_count)
    size = self.image_shape[0]
    ds = self._read(f"validation[{start}:{stop}]", None).take(stop - start)
    ds = ds.map(lambda ex: {"image": eval_transform(ex["image"], size),
                            "label": tf.cast(ex["label"], tf.int32)},
                num_parallel_calls=tf.data.AUTOTUNE)
    batches = iter(tfds.as_numpy(ds.batch(b).prefetch(tf.data.AUTOTUNE)))
    for _ in range(steps):
      batch = next(batches, None)
      n = 0 if batch is None else len(batch["label"])
      image = np.zeros((b, size, size, 3), np.float32)
      label = np.zeros((b,), np.int32)
      if n:
        image[:n], label[:n] = batch["image"], batch["label"]
      yield {"image": image, "label": label, "mask": (np.arange(b) < n).astype(np.float32)}


def _split_size(builder, split: str) -> int:
  """Examples in a prepared split (counted when the metadata has none, e.g. tfds mock data)."""
  import tensorflow_datasets as tfds
  try:
    return int(builder.info.splits[split].num_examples)
  except (KeyError, ValueError):
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    return int(ds.reduce(0, lambda count, _: count + 1))


def build_imagenet(data_config, seed: int, process_index: int = 0,
                   process_count: int = 1) -> ImageNetDataset:
  """`ImageNetDataset` of a prepared tfds `imagenet2012` (config.data: tfds_data_dir, manual_dir,
  image_size, train_subset, test_subset, augment, shuffle_buffer, num_classes). Raises
  FileNotFoundError with preparation instructions if the data are absent, ValueError if
  num_classes is below 1000."""
  import tensorflow_datasets as tfds
  get = lambda field, default: getattr(data_config, field, default) or default
  builder = tfds.builder(NAME, data_dir=get("tfds_data_dir", None))
  manual_dir = get("manual_dir", os.path.join(builder.data_dir_root, "downloads", "manual"))
  try:
    num_train = _split_size(builder, "train")
    num_test = _split_size(builder, "validation")
  except Exception as e:  # tfds raises various errors when nothing is prepared
    if not builder.is_prepared():
      raise not_prepared_error(builder.data_dir_root, manual_dir) from e
    raise
  subset = int(get("train_subset", 0))
  if subset > 0:
    num_train = min(num_train, subset)
  if int(get("test_subset", 0)) > 0:  # the first N validation examples
    num_test = min(num_test, int(get("test_subset", 0)))
  n_cls = builder.info.features["label"].num_classes
  if 0 < int(get("num_classes", n_cls)) < n_cls:
    raise ValueError(f"imagenet2012 has {n_cls} classes but config.data.num_classes = "
                     f"{data_config.num_classes}")
  ds = ImageNetDataset(builder, num_train, num_test, seed, int(get("image_size", IMAGE_SIZE)),
                       bool(getattr(data_config, "augment", True)),
                       int(get("shuffle_buffer", 16384)), process_index, process_count)
  logging.info("Opened %r", ds)
  return ds


def device_prefetch(batches, size: int = 2, sharding=None):
  """Keeps `size` batches in flight on the devices (docs/jax_notes.md §6, step 4).

  sharding: None -> `jax.device_put` (one process); a `jax.sharding.Sharding` of the global batch
  -> each process's local batch becomes its part of a global `jax.Array`
  (`jax.make_array_from_process_local_data`), as a multi-host data-parallel step needs.
  """
  import jax
  put = (jax.device_put if sharding is None else
         lambda b: jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), b))
  queue = collections.deque()
  for batch in batches:
    queue.append(put(batch))
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
