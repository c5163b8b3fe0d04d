"""Checks a config before anything is built or compiled; each error names the field and what is valid."""
from __future__ import annotations

import jax

from jax_local import divergence, losses, methods, optim, plugins, splits
from jax_local.data import catalog
from jax_local.plugins import hilo, leap, momentum, pff, schedules
from jax_local.heads import imagenet as imagenet_heads
from jax_local.models import ARCHS, build_backbone
from jax_local.models.cifar_resnet import stage_sizes

from jax_local.engine import EXECUTORS
DGL_HEADS = ("mlp", "mlp-sr", "cnn", "auglocal", "manpp")
INFOPRO_CLASSIFIERS = ("0c1f", "0c2f", "1c1f", "1c2f", "1c3f", "2c2f")
INFOPRO_LOSS_MODES = ("contrast", "cross_entropy")
BAD_IMAGE_POLICIES = ("fail", "skip")
COMPUTE_DTYPES = ("float32", "bfloat16")   # jax_local.parallel.DTYPES
BN_STATS = ("global", "per_device")        # jax_local.parallel.BN_STATS


class ConfigError(ValueError):
  """A config field holds a value that cannot run."""


def _choice(field: str, value, valid) -> None:
  if value not in valid:
    raise ConfigError(f"config.{field}={value!r} is not valid; choose one of: "
                      f"{', '.join(map(str, valid))}")


def _positive(field: str, value) -> None:
  if not value > 0:
    raise ConfigError(f"config.{field}={value!r} must be > 0")


def _non_negative_int(field: str, value) -> None:
  if not isinstance(value, int) or isinstance(value, bool) or value < 0:
    raise ConfigError(f"config.{field}={value!r} must be an integer >= 0")


def validate_config(config, num_devices: int | None = None) -> splits.Split:
  """Raises ConfigError on the first invalid field; returns the resolved split. num_devices:
  the devices the run's mesh spans (default every device)."""
  _positive("num_epochs", config.num_epochs)
  _choice("data.name", config.data.name, catalog.NAMES)
  _positive("data.batch_size", config.data.batch_size)
  _positive("data.eval_batch_size", config.data.eval_batch_size)
  _positive("data.num_classes", config.data.num_classes)
  if config.data.get("test_subset", 0) < 0:
    raise ConfigError(f"config.data.test_subset={config.data.test_subset} must be >= 0 "
                      "(0 = the whole test split)")
  if config.data.train_subset < 0:
    raise ConfigError(f"config.data.train_subset={config.data.train_subset} must be >= 0 "
                      "(0 = the whole training split)")
  devices = jax.device_count() if num_devices is None else num_devices
  processes = jax.process_count()
  for field in ("batch_size", "eval_batch_size"):
    batch = config.data[field]
    if batch % devices or batch % processes:
      lower, upper = batch // devices * devices, -(-batch // devices) * devices
      raise ConfigError(
          f"config.data.{field}={batch} does not divide across {devices} devices in "
          f"{processes} processes (the batch is sharded over a 'data' mesh axis of every "
          f"device); use a multiple of {devices}, e.g. {lower or upper} or {upper}")
  _choice("model.dtype", config.model.get("dtype", "float32"), COMPUTE_DTYPES)
  _choice("model.bn_stats", config.model.get("bn_stats", "global"), BN_STATS)
  if config.model.get("bn_stats", "global") == "per_device" and config.data.batch_size < 2 * devices:
    raise ConfigError(
        f"config.model.bn_stats='per_device' normalises each device's "
        f"{config.data.batch_size // devices} example(s) alone; BatchNorm needs at least 2 per "
        f"device: use config.data.batch_size >= {2 * devices} or model.bn_stats='global'")
  _choice("model.arch", config.model.arch, ARCHS)
  try:
    if config.model.arch == "cifar_resnet":
      stage_sizes(config.model.depth)
    else:
      build_backbone(config.model, config.data.num_classes)  # checks the depth; no init
    imagenet_heads.head_family(config.method.infopro)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  _choice("model.shortcut", config.model.shortcut, ("projection", "zero_pad"))
  _choice("method.name", config.method.name, methods.METHODS)
  _choice("method.dgl_head", config.method.dgl_head, DGL_HEADS)
  _choice("method.infopro.classifier", config.method.infopro.classifier, INFOPRO_CLASSIFIERS)
  _choice("method.infopro.loss_mode", config.method.infopro.loss_mode, INFOPRO_LOSS_MODES)
  _choice("method.infopro.decoder_bce", config.method.infopro.get("decoder_bce", "exact"),
          losses.DECODER_BCE)
  if not 0.0 <= config.method.predsim.beta <= 1.0:
    raise ConfigError(f"config.method.predsim.beta={config.method.predsim.beta} must be in [0, 1]")
  _choice("executor", config.executor, EXECUTORS)
  _positive("log_every_steps", config.log_every_steps)
  _positive("eval_every_epochs", config.eval_every_epochs)
  _non_negative_int("eval.bn_recompute_batches", config.get("eval", {}).get("bn_recompute_batches", 0))
  _positive("max_checkpoints_to_keep", config.max_checkpoints_to_keep)
  _choice("on_nonfinite", config.get("on_nonfinite", "stop"), divergence.MODES)
  fraction = config.get("max_skipped_fraction", 0.01)
  if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
    raise ConfigError(f"config.max_skipped_fraction={fraction!r} must be a number in [0, 1] (the "
                      "share of a run's steps that on_nonfinite=skip may skip before it fails)")
  _choice("data.on_bad_image", config.data.get("on_bad_image", "fail"), BAD_IMAGE_POLICIES)
  try:
    optim.validate_optim(config.optim)
    split = splits.get_split(config.split.preset, config.model.depth, config.model.arch)
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if config.method.name != "bp" and split.num_modules < 2:
    raise ConfigError(f"config.split.preset={config.split.preset!r} gives 1 module; local method "
                      f"{config.method.name!r} needs at least 2 (or use method.name='bp')")
  if config.method.name == "auglocal":
    _validate_auglocal(config.method.auglocal, split)
  _validate_plugin(config.method, split)
  return split


def _unit(field: str, value) -> None:
  if not 0.0 <= value <= 1.0:
    raise ConfigError(f"config.{field}={value!r} must be in [0, 1]")


def _validate_auglocal(al, split) -> None:
  if isinstance(al.aux_depth, bool) or not isinstance(al.aux_depth, int) or al.aux_depth < 1:
    raise ConfigError(f"config.method.auglocal.aux_depth={al.aux_depth!r} must be an int >= 1")
  _unit("method.auglocal.pyramid_coeff", al.pyramid_coeff)
  if al.subtract_depth_from_k and split.num_modules - al.aux_depth < 2:
    raise ConfigError(
        f"config.method.auglocal.aux_depth={al.aux_depth} with subtract_depth_from_k=True leaves "
        f"K_eff = {split.num_modules} - {al.aux_depth} < 2 modules on split "
        f"{split.name!r}; lower aux_depth or set subtract_depth_from_k=False")


def _validate_plugin(m, split) -> None:
  """config.method.plugin and its sections; which base x plugin pairs compose (plugins.COMPOSES)."""
  name = plugins.plugin_name(m)
  _choice("method.plugin", name, plugins.PLUGINS)
  if name == "none":
    return
  if m.name not in plugins.COMPOSES[name]:
    raise ConfigError(
        f"config.method.plugin={name!r} does not compose with config.method.name={m.name!r}; "
        f"{name} composes with: {', '.join(plugins.COMPOSES[name])} (bp has no local modules; "
        "auglocal's aux nets already mimic later layers)")
  L = split.num_modules
  if name in ("hpff", "mlaan"):
    sec = "hilo" if name == "hpff" else "mlm"
    c = m[sec]
    if isinstance(c.k, bool) or not isinstance(c.k, int) or not 2 <= c.k <= L:
      raise ConfigError(f"config.method.{sec}.k={c.k!r} must be an int in 2..{L} (the number of "
                        f"modules of split {split.name!r})")
    _unit(f"method.{sec}.w_ind", c.w_ind)
    _unit(f"method.{sec}.w_cas", c.w_cas)
    _choice(f"method.{sec}.lambda_schedule", c.lambda_schedule, schedules.KINDS)
    _choice(f"method.{sec}.final_x_loss", c.final_x_loss, hilo.FINAL_X_LOSS)
  if name == "hpff":
    f = m.pff
    _choice("method.pff.mode", f.mode, pff.MODES)
    _choice("method.pff.apply_to", f.apply_to, pff.APPLY_TO)
    _choice("method.pff.patch_loop", f.patch_loop, pff.LOOPS)
    grid = tuple(f.grid)
    if len(grid) != 2 or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grid):
      raise ConfigError(f"config.method.pff.grid={grid!r} must be two ints >= 1, e.g. (2, 2) "
                        "or (2, 1)")
    cifar_decoder = m.name == "infopro" and imagenet_heads.head_family(m.infopro) == "cifar"
    if not cifar_decoder and (f.mode == "code_quadrant_decoders" or
                              (f.mode == "paper_shared_avg" and f.apply_to == "decoder")):
      raise ConfigError(
          f"config.method.pff.mode={f.mode!r} (apply_to={f.apply_to!r}) patches a CIFAR InfoPro "
          f"decoder, but base {m.name!r} (infopro.head_family="
          f"{imagenet_heads.head_family(m.infopro)!r}) has none; use pff.mode='paper_shared_avg' with pff.apply_to='classifier' "
          "(docs/methods.md §7.4) or pff.mode='off'")
  elif name == "mlaan":
    lam = m.lam
    _unit("method.lam.ema_decay", lam.ema_decay)
    _choice("method.lam.ema_update", lam.ema_update, leap.UPDATES)
    _choice("method.lam.ema_at", lam.ema_at, leap.EMA_AT)
    _choice("method.lam.copy_init", lam.copy_init, leap.COPY_INITS)
    _choice("method.lam.leap_lists", lam.leap_lists, leap.LEAP_LISTS)
    if lam.leap_lists == "published" and leap.published_leap_lists(split) is None:
      raise ConfigError(f"config.method.lam.leap_lists='published' but split {split.name!r} has no "
                        f"published MLAAN leap lists ({', '.join(leap.PUBLISHED_PRESETS)}); "
                        "use 'auto' or 'generic'")
    if m.mlm.k > L - 1:
      raise ConfigError(f"config.method.mlm.k={m.mlm.k} leaves no LAM term on {L} modules "
                        f"(needs k <= {L - 1})")
  elif name == "man":
    man = m.man
    _choice("method.man.variant", man.variant, momentum.VARIANTS)
    _choice("method.man.bias_form", man.bias_form, momentum.BIAS_FORMS)
    _choice("method.man.copy_init", man.copy_init, momentum.COPY_INITS)
    _choice("method.man.lambda_schedule", man.lambda_schedule, schedules.KINDS)
    _unit("method.man.ema_decay", man.ema_decay)
    if man.variant == "manpp" and man.bias_form != "parallel_block":
      raise ConfigError("config.method.man.variant='manpp' needs man.bias_form='parallel_block' "
                        "(s scales the LB block against the EMA block)")
