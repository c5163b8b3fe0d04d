"""Test setup: 8 fake CPU devices for sharding code, fast CPU compiles, the Fashion-MNIST data dir."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
  """A tfds data dir holding the prepared offline Fashion-MNIST (prepared once per session)."""
  from jax_local.data import fashion_mnist_local
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  fashion_mnist_local.prepare(data_dir, FASHION_MNIST_DIR)
  return data_dir
