"""Checks a config before anything is built or compiled; each error names the field and what is valid."""
from __future__ import annotations

import jax

from jax_local import methods, optim, splits
from jax_local.models import ARCHS
from jax_local.models.cifar_resnet import stage_sizes

DATASETS = ("fashion_mnist", "cifar10", "svhn", "stl10", "image_folder")
from jax_local.engine import EXECUTORS
DGL_HEADS = ("mlp", "mlp-sr", "cnn", "auglocal", "manpp")
INFOPRO_CLASSIFIERS = ("0c1f", "0c2f", "1c1f", "1c2f", "1c3f", "2c2f")
INFOPRO_LOSS_MODES = ("contrast", "cross_entropy")


class ConfigError(ValueError):
  """A config field holds a value that cannot run."""


def _choice(field: str, value, valid) -> None:
  if value not in valid:
    raise ConfigError(f"config.{field}={value!r} is not valid; choose one of: "
                      f"{', '.join(map(str, valid))}")


def _positive(field: str, value) -> None:
  if not value > 0:
    raise ConfigError(f"config.{field}={value!r} must be > 0")


def validate_config(config) -> splits.Split:
  """Raises ConfigError on the first invalid field; returns the resolved split."""
  _positive("num_epochs", config.num_epochs)
  _choice("data.name", config.data.name, DATASETS)
  _positive("data.batch_size", config.data.batch_size)
  _positive("data.eval_batch_size", config.data.eval_batch_size)
  _positive("data.num_classes", config.data.num_classes)
  if config.data.train_subset < 0:
    raise ConfigError(f"config.data.train_subset={config.data.train_subset} must be >= 0 "
                      "(0 = the whole training split)")
  devices, processes = jax.device_count(), jax.process_count()
  for field in ("batch_size", "eval_batch_size"):
    batch = config.data[field]
    if batch % devices or batch % processes:
      raise ConfigError(
          f"config.data.{field}={batch} does not divide across {devices} devices in "
          f"{processes} processes; use a multiple of {devices}")
  _choice("model.arch", config.model.arch, ARCHS)
  try:
    stage_sizes(config.model.depth)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  _choice("model.shortcut", config.model.shortcut, ("projection", "zero_pad"))
  _choice("method.name", config.method.name, methods.METHODS)
  _choice("method.dgl_head", config.method.dgl_head, DGL_HEADS)
  _choice("method.infopro.classifier", config.method.infopro.classifier, INFOPRO_CLASSIFIERS)
  _choice("method.infopro.loss_mode", config.method.infopro.loss_mode, INFOPRO_LOSS_MODES)
  if not 0.0 <= config.method.predsim.beta <= 1.0:
    raise ConfigError(f"config.method.predsim.beta={config.method.predsim.beta} must be in [0, 1]")
  _choice("executor", config.executor, EXECUTORS)
  _positive("log_every_steps", config.log_every_steps)
  _positive("eval_every_epochs", config.eval_every_epochs)
  _positive("max_checkpoints_to_keep", config.max_checkpoints_to_keep)
  try:
    optim.validate_optim(config.optim)
    split = splits.get_split(config.split.preset, config.model.depth)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if config.method.name != "bp" and split.num_modules < 2:
    raise ConfigError(f"config.split.preset={config.split.preset!r} gives 1 module; local method "
                      f"{config.method.name!r} needs at least 2 (or use method.name='bp')")
  return split
