"""Offline Fashion-MNIST tfds builder reading Debian's idx files (docs/jax_notes.md §9).

The stock `fashion_mnist` builder rejects the files of Debian's `dataset-fashion-mnist`
package: they are re-gzipped without the FNAME header, so their sha256 differs from the
registered checksum although the payload is identical. This builder reads the four
`.gz` files from `dl_manager.manual_dir`, decompresses them with Python's `gzip` and writes
an `array_record` dataset, so neither TensorFlow nor a network connection is needed. The idx
files are parsed by `fashion_mnist_idx`, which `input_pipeline` also reads directly when tfds is
not installed.
Never work around the stock builder with `register_checksums` (it overwrites tfds's
installed checksum file).

Usage:
  builder = FashionMnistLocal(data_dir=..., file_format="array_record")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=DEFAULT_MANUAL_DIR))
  builder.as_data_source()["train"][0]  # {"image": uint8 (28, 28, 1), "label": int}
"""
import os

import numpy as np
import tensorflow_datasets as tfds

from jax_local.data.fashion_mnist_idx import (CLASS_NAMES, DEFAULT_MANUAL_DIR, FILES,
                                              read_split)


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
  """Fashion-MNIST (60000 train / 10000 test, 28x28x1 uint8) from local idx .gz files."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Fashion-MNIST from Debian's dataset-fashion-mnist files."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Install the Debian package with `apt-get install dataset-fashion-mnist`; it places "
      f"{', '.join(f for v in FILES.values() for f in v[:2])} in {DEFAULT_MANUAL_DIR}. "
      "Pass that directory (or any directory holding the four files) as manual_dir.")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description="Fashion-MNIST read from local idx files (no download).",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
        }),
        supervised_keys=("image", "label"),
        homepage="https://github.com/zalandoresearch/fashion-mnist",
        disable_shuffling=True,  # keep the idx file order: record i is idx example i
    )

  def _split_generators(self, dl_manager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    return {split: self._generate_examples(manual_dir, split) for split in FILES}

  def _generate_examples(self, manual_dir, split):
    images, labels = read_split(manual_dir, split)
    for i in range(len(labels)):
      yield i, {"image": images[i], "label": int(labels[i])}
