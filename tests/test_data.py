"""Tests of jax_local.data: the Fashion-MNIST idx reader, in-memory pipeline, augmentation."""
import gzip
import os

import ml_collections
import numpy as np
import pytest

from jax_local.data import augment as augment_lib
from jax_local.data import input_pipeline
from tests.xla_flags import xla_flags

FM_DIR = "/usr/share/datasets/fashion-mnist"


def data_config(**kw):
  c = ml_collections.ConfigDict(dict(
      name="fashion_mnist", tfds_data_dir="", manual_dir="", folder_root="", image_size=0,
      num_classes=10, train_subset=0, augment=True))
  c.update(kw)
  return c


def raw_idx(name, offset):
  with gzip.open(os.path.join(FM_DIR, name), "rb") as f:
    return np.frombuffer(f.read(), np.uint8, offset=offset)


@pytest.fixture(scope="module")
def fm():
  """Fashion-MNIST read from Debian's idx files."""
  return input_pipeline.build_dataset(data_config(), seed=3)


@pytest.fixture(scope="module")
def fm_small(fm):
  """The same data restricted to 1000 training examples (no re-load)."""
  return input_pipeline.Dataset(
      "fashion_mnist", (fm.train_images[:1000], fm.train_labels[:1000]),
      (fm.test_images, fm.test_labels), 10, fm.mean, fm.std, seed=3)


def test_fashion_mnist_reads_the_idx_files_in_file_order(fm, tmp_path):
  assert (fm.num_train, fm.num_test, fm.num_classes) == (60000, 10000, 10)
  assert fm.image_shape == (28, 28, 1)
  assert fm.train_images.dtype == np.uint8 and fm.train_labels.dtype == np.int32
  assert fm.train_labels.min() == 0 and fm.train_labels.max() == 9
  assert np.bincount(fm.test_labels).tolist() == [1000] * 10
  train_raw = raw_idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)
  np.testing.assert_array_equal(fm.train_images, train_raw)
  np.testing.assert_array_equal(fm.train_labels, raw_idx("train-labels-idx1-ubyte.gz", 8))
  np.testing.assert_array_equal(fm.test_labels, raw_idx("t10k-labels-idx1-ubyte.gz", 8))
  # train_subset keeps the first examples.
  sub = input_pipeline.build_dataset(data_config(train_subset=500), 0)
  assert sub.num_train == 500
  np.testing.assert_array_equal(sub.train_images, fm.train_images[:500])
  # A header that disagrees with its payload is refused.
  from jax_local.data import fashion_mnist_idx
  bad = tmp_path / "bad-idx1-ubyte.gz"
  with gzip.open(bad, "wb") as f:
    f.write(bytes([0, 0, 8, 1, 0, 0, 0, 5, 1, 2, 3]))   # 5 labels announced, 3 given
  with pytest.raises(ValueError, match=r"header gives shape \(5,\) but the payload has 3"):
    fashion_mnist_idx.read_idx(str(bad))


def test_train_batches_deterministic_and_resumable(fm_small):
  ds = fm_small
  assert ds.steps_per_epoch(128, False) == 8 and ds.steps_per_epoch(128, True) == 7
  full = list(ds.train_batches(epoch=2, start_step=0, global_batch=128, drop_remainder=False))
  again = list(ds.train_batches(2, 0, 128, False))
  other = list(ds.train_batches(3, 0, 128, False))
  assert len(full) == 8
  assert [b["image"].shape[0] for b in full] == [128] * 7 + [1000 - 7 * 128]
  assert full[0]["image"].dtype == np.float32 and full[0]["label"].dtype == np.int32
  for a, b in zip(full, again):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  assert not np.array_equal(full[0]["label"], other[0]["label"])
  # Every example is seen exactly once per epoch.
  labels = np.concatenate([b["label"] for b in full])
  assert np.bincount(labels, minlength=10).tolist() == np.bincount(
      ds.train_labels, minlength=10).tolist()
  resumed = list(ds.train_batches(2, 5, 128, False))
  assert len(resumed) == 3
  for a, b in zip(full[5:], resumed):
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  assert len(list(ds.train_batches(2, 0, 128, True))) == 7


def test_normalisation_and_no_augment(fm_small):
  ds = fm_small
  raw = input_pipeline.Dataset(ds.name, (ds.train_images, ds.train_labels),
                               (ds.test_images, ds.test_labels), 10, ds.mean, ds.std,
                               seed=3, augment=False)
  batch = next(raw.train_batches(0, 0, 1000, False))
  # The whole (un-augmented) subset in one batch: mean ~0, std ~1 after normalisation.
  assert abs(batch["image"].mean()) < 0.05 and abs(batch["image"].std() - 1) < 0.05
  perm = raw.epoch_permutation(0)
  expected = (ds.train_images[perm[:5]] / 255.0 - 0.286) / 0.353
  np.testing.assert_allclose(batch["image"][:5], expected, atol=1e-5)
  aug = next(ds.train_batches(0, 0, 1000, False))
  assert not np.allclose(aug["image"], batch["image"])
  np.testing.assert_array_equal(aug["label"], batch["label"])


def test_eval_batches_cover_test_split(fm):
  batches = list(fm.eval_batches(768))
  assert len(batches) == 14 and all(b["image"].shape == (768, 28, 28, 1) for b in batches)
  mask = np.concatenate([b["mask"] for b in batches])
  labels = np.concatenate([b["label"] for b in batches])
  assert mask.sum() == fm.num_test and mask.dtype == np.float32
  np.testing.assert_array_equal(labels[mask > 0], fm.test_labels)
  np.testing.assert_allclose(batches[0]["image"], fm.normalise(fm.test_images[:768]))
  assert np.all(batches[-1]["image"][mask[-768:] == 0] == 0)


def test_process_slices(fm_small):
  ds = fm_small
  procs = [input_pipeline.Dataset(ds.name, (ds.train_images, ds.train_labels),
                                  (ds.test_images, ds.test_labels), 10, ds.mean, ds.std,
                                  seed=3, process_index=i, process_count=2) for i in range(2)]
  whole = list(ds.train_batches(1, 4, 128, False))  # steps 4..7, the last of 104
  parts = [list(p.train_batches(1, 4, 128, False)) for p in procs]
  assert len(whole) == len(parts[0]) == 4
  for w, p0, p1 in zip(whole, *parts):
    assert p0["image"].shape[0] == w["image"].shape[0] // 2
    np.testing.assert_array_equal(np.concatenate([p0["image"], p1["image"]]), w["image"])
    np.testing.assert_array_equal(np.concatenate([p0["label"], p1["label"]]), w["label"])
  ev = [next(p.eval_batches(200)) for p in procs]
  np.testing.assert_array_equal(np.concatenate([e["label"] for e in ev]), ds.test_labels[:200])
  with pytest.raises(ValueError, match="multiple of process_count"):
    procs[0].train_batches(0, 0, 201, False)
  three = input_pipeline.Dataset(ds.name, (ds.train_images, ds.train_labels),
                                 (ds.test_images, ds.test_labels), 10, ds.mean, ds.std,
                                 seed=3, process_index=1, process_count=3)
  with pytest.raises(ValueError, match="partial last batch"):
    three.train_batches(0, 0, 300, False)  # last batch of 100 does not split over 3
  assert len(list(three.train_batches(0, 0, 300, True))) == 3


@pytest.mark.parametrize("name", sorted(augment_lib.RECIPES))
def test_augment_crop_equals_slicing(name):
  recipe = augment_lib.RECIPES[name]
  size, ch = {"fashion_mnist": (28, 1), "stl10": (96, 3)}.get(name, (32, 3))
  images = np.random.default_rng(0).integers(0, 256, (16, size, size, ch), dtype=np.uint8)
  params = augment_lib.sample_params(recipe, np.random.default_rng(1), 16)
  out = augment_lib.apply(recipe, images, params)
  assert out.shape == images.shape and out.dtype == np.uint8
  p = recipe.pad
  padded = np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)), mode=recipe.mode)
  assert params["offset"].min() >= 0 and params["offset"].max() <= 2 * p
  assert params["flip"].any() == recipe.flip
  for i in range(16):
    oy, ox = params["offset"][i]
    crop = padded[i, oy:oy + size, ox:ox + size]
    np.testing.assert_array_equal(out[i], crop[:, ::-1] if params["flip"][i] else crop)
  # Same generator state -> same augmentation.
  again = augment_lib.augment_batch(name, images, np.random.default_rng(1))
  np.testing.assert_array_equal(again, out)


def test_augment_reflect_vs_zero_pad():
  image = np.full((1, 32, 32, 3), 200, np.uint8)
  params = {"offset": np.array([[0, 0]]), "flip": np.array([False])}
  cifar = augment_lib.apply(augment_lib.RECIPES["cifar10"], image, params)
  svhn = augment_lib.apply(augment_lib.RECIPES["svhn"], image, params)
  assert cifar.min() == 200                          # reflect padding: no black border
  assert svhn[0, :2].max() == 0 and svhn[0, 2:, 2:].min() == 200


def write_image_folder(root, classes, per_class=3, size=(10, 12)):
  from PIL import Image
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    for c in classes:
      os.makedirs(os.path.join(root, split, c))
      for i in range(per_class):
        pixels = rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, split, c, f"{i}.png"))


def test_image_folder(tmp_path):
  root = str(tmp_path / "folder")
  write_image_folder(root, ["cat", "dog", "eel"])
  ds = input_pipeline.build_dataset(
      data_config(name="image_folder", folder_root=root, num_classes=3, image_size=16), seed=0)
  assert (ds.num_classes, ds.num_train, ds.num_test) == (3, 9, 9)
  assert ds.image_shape == (16, 16, 3) and ds.mean == (0.485, 0.456, 0.406)
  assert sorted(ds.train_labels.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
  batch = next(ds.train_batches(0, 0, 4, False))
  assert batch["image"].shape == (4, 16, 16, 3)
  native = input_pipeline.build_dataset(
      data_config(name="image_folder", folder_root=root, num_classes=3), seed=0)
  assert native.image_shape == (10, 12, 3)
  with pytest.raises(ValueError, match=r"has 3 classes but config.data.num_classes = 5"):
    input_pipeline.build_dataset(
        data_config(name="image_folder", folder_root=root, num_classes=5), seed=0)
  os.rename(os.path.join(root, "test", "dog"), os.path.join(root, "test", "Dog"))
  with pytest.raises(ValueError, match=r"the class folders of train/ and test/ differ \(names "
                     r"must match exactly, case included\): only in train/: dog; only in test/: "
                     r"Dog$"):
    input_pipeline.build_dataset(
        data_config(name="image_folder", folder_root=root, num_classes=4), seed=0)


def test_missing_stock_dataset_raises(tmp_path):
  with pytest.raises(FileNotFoundError) as err:
    input_pipeline.build_dataset(data_config(name="cifar10", tfds_data_dir=str(tmp_path)), 0)
  msg = str(err.value)
  assert "cifar10" in msg and str(tmp_path) in msg and "download_and_prepare" in msg
  assert "tfds_data_dir" in msg


def test_missing_fashion_mnist_files(tmp_path):
  with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
    input_pipeline.build_dataset(
        data_config(manual_dir=str(tmp_path)), 0)


def test_stock_dataset_under_tfds_mock_data():
  """The stock-builder path runs on tfds.testing.mock_data (as the end-to-end tests do)."""
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=8):
    ds = input_pipeline.build_dataset(data_config(name="stl10"), seed=0)
  assert (ds.num_train, ds.num_test, ds.image_shape) == (8, 8, (96, 96, 3))
  assert ds.mean == (0.5, 0.5, 0.5) and ds.num_classes == 10
  batch = next(ds.train_batches(0, 0, 8, False))
  assert batch["image"].shape == (8, 96, 96, 3) and batch["label"].max() < 10


def test_launch_mock_data_trains_a_stock_config_and_refuses_fashion_mnist(tmp_path):
  """`launch.py --mock_data=N` trains, evaluates and checkpoints a CIFAR-10 config without the
  dataset; on Fashion-MNIST (not a stock tfds builder here) it is a usage error."""
  import json
  import subprocess
  import sys
  from absl import app
  import launch
  with pytest.raises(app.UsageError, match="--mock_data mocks stock tfds datasets"):
    launch.mock_data(16, "fashion_mnist")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "XLA_FLAGS": xla_flags(1),
         "JAX_DISABLE_MOST_OPTIMIZATIONS": "1"}
  run = subprocess.run(
      [sys.executable, os.path.join(root, "launch.py"),
       f"--config={root}/configs/fashion_mnist_quickstart.py:greedy", "--mock_data=16",
       "--config.data.name=cifar10", "--config.num_epochs=1", "--config.data.batch_size=8",
       "--config.data.eval_batch_size=8", "--config.log_every_steps=1",
       f"--workdir={tmp_path / 'c10'}"], cwd=root, env=env, capture_output=True, text=True)
  assert run.returncode == 0, run.stderr[-3000:]
  with open(tmp_path / "c10" / "summary.json") as f:
    summary = json.load(f)
  assert summary["dataset"] == "cifar10" and summary["num_modules"] == 3
  assert (summary["mock"], summary["mock_examples"]) == (True, 16)  # mock runs say so
  assert "on cifar10 (MOCK DATA: numbers mean nothing)" in run.stdout
  from jax_local import compare
  row = compare.read_run(str(tmp_path / "c10"))
  assert row["dataset"] == "cifar10 (MOCK data)" and row["mock"]
  assert "cifar10 (MOCK data)" in compare.format_table([row])
  with open(tmp_path / "c10" / "metrics.jsonl") as f:
    losses = [r["train/loss"] for r in map(json.loads, f) if "train/loss" in r]
  assert len(losses) == 2 and all(np.isfinite(losses))
  assert os.listdir(tmp_path / "c10" / "checkpoints")
