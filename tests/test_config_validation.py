"""Bad configs fail before anything compiles, naming the field and what would be valid."""
import pytest

from configs import common
from jax_local import config_validation, train
from jax_local.config_validation import ConfigError


def _config(**overrides):
  """A DGL config (the base of `method.name` if overridden: its config holds that base's fields)."""
  c = common.get_config(overrides.pop("method.name", "dgl"))
  c.data.name, c.model.depth, c.split.preset = "fashion_mnist", 8, "uniform_k3"
  c.data.batch_size, c.data.eval_batch_size = 64, 64
  for path, value in overrides.items():
    section = c
    *parents, leaf = path.split(".")
    for p in parents:
      section = section[p]
    section[leaf] = value
  return c


@pytest.mark.parametrize("overrides, fragments", [
    ({"method.name": "backprop"}, ["config.method.name='backprop'", "bp", "dgl", "infopro"]),
    ({"split.preset": "uniform_k9"}, ["impossible split", "uniform_k9"]),
    ({"split.preset": "r110_k55_hpff"}, ["split.preset", "ResNet-110", "model.depth=8"]),
    ({"split.preset": "k16"}, ["split.preset", "r32_k16_hpff"]),
    ({"model.depth": 30}, ["config.model.depth=30", "6n+2"]),
    ({"data.batch_size": 12}, ["config.data.batch_size=12", "8 devices", "multiple of 8"]),
    ({"optim.lr": -0.1}, ["optim.lr", "-0.1"]),
    ({"data.name": "cifar100"}, ["config.data.name='cifar100'", "cifar10", "fashion_mnist"]),
    ({"method.dgl_head": "mlp2"}, ["config.method.dgl_head='mlp2'", "mlp-sr"]),
    ({"num_epochs": 0}, ["config.num_epochs=0", "> 0"]),
    ({"executor": "async"}, ["config.executor='async'", "fused"]),
    ({"max_skipped_fraction": 1.5}, ["config.max_skipped_fraction=1.5", "[0, 1]"]),
])
def test_invalid_config_names_field_and_valid_values(overrides, fragments, tmp_path):
  with pytest.raises(ConfigError) as err:
    train.train_and_evaluate(_config(**overrides), str(tmp_path / "run"))
  for fragment in fragments:
    assert fragment in str(err.value), str(err.value)
  assert not (tmp_path / "run").exists()  # nothing was written, not even the workdir


def test_local_method_needs_two_modules():
  with pytest.raises(ConfigError, match="at least 2"):
    config_validation.validate_config(_config(**{"split.preset": "uniform_k1"}))
  config_validation.validate_config(_config(**{"split.preset": "uniform_k1", "method.name": "bp"}))


def test_missing_dataset_says_how_to_get_it(tmp_path):
  c = _config(**{"data.name": "cifar10", "data.tfds_data_dir": str(tmp_path)})
  with pytest.raises(FileNotFoundError) as err:
    train.train_and_evaluate(c, str(tmp_path / "run"))
  message = str(err.value)
  assert "cifar10" in message and str(tmp_path) in message
  assert "download_and_prepare" in message


def test_every_shipped_config_validates():
  import glob
  import importlib.util
  import os
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  files = sorted(glob.glob(os.path.join(root, "configs", "*.py")))
  checked = 0
  for path in files:
    name = os.path.basename(path)[:-3]
    if name in ("__init__", "common"):
      continue
    spec = importlib.util.spec_from_file_location(f"configs.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config_validation.validate_config(module.get_config())
    checked += 1
  assert checked >= 8   # every file's default; tests/test_published_rows.py checks every row
