"""Checks a config before anything is built or compiled; each error names the field and what is
valid. A pure check, run once per launch; the method's and plug-in's fields are checked by their
specs (`registry.Method.validate`, `registry.Plugin.validate`)."""
from __future__ import annotations

import jax

from jax_local import divergence, experiment, methods, optim, parallel, plugins, splits
from jax_local.config_errors import ConfigError, choice as _choice, integer, positive as _positive
from jax_local.data import catalog
from jax_local.engine import EXECUTORS, pipeline_schedule
from jax_local.engine import stages as stages_lib
from jax_local.models import ARCHS, build_backbone
from jax_local.models.cifar_resnet import stage_sizes

BAD_IMAGE_POLICIES = ("fail", "skip")   # config.data.on_bad_image (data.input_pipeline)

__all__ = ["ConfigError", "validate_config", "validate_method"]


def validate_config(config, num_devices: int | None = None) -> None:
  """Raises ConfigError on the first invalid field. num_devices: the devices the run's mesh
  spans (default every device)."""
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
  _validation_size(config.data)
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
  _choice("model.dtype", config.model.get("dtype", "float32"), tuple(parallel.DTYPES))
  _choice("model.bn_stats", config.model.get("bn_stats", "global"), parallel.BN_STATS)
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
  except ValueError as e:
    raise ConfigError(str(e)) from None
  _choice("model.shortcut", config.model.shortcut, ("projection", "zero_pad"))
  methods.REGISTRY.get(config.method.name)
  _choice("executor", config.executor, EXECUTORS)
  _positive("log_every_steps", config.log_every_steps)
  _positive("eval_every_epochs", config.eval_every_epochs)
  integer("eval.bn_recompute_batches", config.get("eval", {}).get("bn_recompute_batches", 0), 0)
  _choice("eval.local_heads", config.get("eval", {}).get("local_heads", True), (True, False))
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
  validate_method(config.method, split)
  if config.executor == "pipelined":
    validate_pipeline(config, split, devices)


def validate_pipeline(config, split, devices: int) -> None:
  """config.pipeline for executor=pipelined: S stages of whole modules on a ('stage', 'data')
  mesh of the devices, M micro-batches that divide each stage's share of the batch."""
  p = config.get("pipeline", {})
  stages, bounds = p.get("stages", 2), tuple(p.get("boundaries", ()))
  num, mode = p.get("microbatches", 4), p.get("mode", "sync")
  integer("pipeline.stages", stages, 1)
  integer("pipeline.microbatches", num, 1)
  _choice("pipeline.mode", mode, pipeline_schedule.MODES)
  k = split.num_modules
  if stages > k:
    raise ConfigError(f"config.pipeline.stages={stages} exceeds the {k} modules of "
                      f"config.split.preset={split.name!r}; use at most {k} stages")
  if stages > devices:
    raise ConfigError(f"config.pipeline.stages={stages} exceeds the {devices} devices present "
                      f"(a stage needs its own); use at most {devices} stages, or on CPU emulate "
                      f"more: XLA_FLAGS=--xla_force_host_platform_device_count={stages}")
  if devices % stages:
    fits = [s for s in range(1, devices + 1) if devices % s == 0 and s <= k]
    raise ConfigError(f"config.pipeline.stages={stages} does not divide the {devices} devices "
                      f"into a ('stage', 'data') mesh; use one of {fits}")
  processes = jax.process_count()
  if processes > 1 and not jax.config.values.get("jax_cross_host_transfer_socket_address"):
    raise ConfigError(f"config.executor='pipelined' in {processes} processes sends values "
                      "between processes: start every process with --transfer_address=HOST:PORT "
                      "(its own address, reachable from the others, and a free port)")
  rows = config.data.batch_size // (devices // stages)
  if rows % num:
    fits = [m for m in range(1, rows + 1) if rows % m == 0]
    raise ConfigError(f"config.pipeline.microbatches={num} does not divide the {rows} examples "
                      f"a stage's device gets of config.data.batch_size="
                      f"{config.data.batch_size}; use one of {fits}")
  if bounds:
    if len(bounds) != stages - 1:
      raise ConfigError(f"config.pipeline.boundaries={bounds} gives {len(bounds) + 1} stages "
                        f"but config.pipeline.stages={stages}; give {stages - 1} boundaries "
                        "or () for a placement balanced by FLOPs")
    try:
      stages_lib.check(k, bounds)
    except stages_lib.PlacementError as e:
      raise ConfigError(f"config.{e}") from None


def _validation_size(data) -> None:
  """data.validation_size: an integer >= 0, below the training examples it is carved from, and
  0 for ImageNet (streamed, so nothing can be held out of it)."""
  size = data.get("validation_size", 0)
  integer("data.validation_size", size, 0)
  if size and data.name == "imagenet2012":
    raise ConfigError("config.data.validation_size must be 0 for data.name='imagenet2012' "
                      "(its training set is streamed and cannot be split)")
  available = data.train_subset or catalog.DATASETS[data.name].num_train
  if size and available is not None and size >= available:
    raise ConfigError(f"config.data.validation_size={size} leaves no training examples of the "
                      f"{available} available; use a value in [0, {available - 1}]")


def owner(field: str) -> str | None:
  """Which base or plug-in owns `config.method.<field>` ("plug-in 'man'"), None if none does."""
  for kind, registry in (("method", methods.REGISTRY), ("plug-in", plugins.REGISTRY)):
    for name in registry.names():
      if field in registry.get(name).defaults():
        return f"{kind} {name!r}"
  return None


def active(mc) -> str:
  """The selection in words: "method.name='dgl' with method.plugin='none'"."""
  return f"method.name={mc.name!r} with method.plugin={plugins.plugin_name(mc)!r}"


def validate_method(mc, split) -> None:
  """config.method: the base and plug-in exist and compose, the config holds exactly their
  fields, and each spec's own checks pass."""
  base = methods.REGISTRY.get(mc.name)
  plugin = plugins.REGISTRY.get(plugins.plugin_name(mc))
  if not plugin.composes(base):
    takers = [n for n in methods.REGISTRY.names() if plugin.composes(methods.REGISTRY.get(n))]
    raise ConfigError(
        f"config.method.plugin={plugin.name!r} does not compose with config.method.name="
        f"{base.name!r}; {plugin.name} composes with: {', '.join(takers)}"
        + (f" ({base.no_plugin})" if base.no_plugin else ""))
  if split.num_modules < base.min_modules:
    raise ConfigError(f"config.split.preset={split.name!r} gives {split.num_modules} module; "
                      f"local method {base.name!r} needs at least {base.min_modules} (or use "
                      "method.name='bp')")
  wanted = set(experiment.method_config(base.name, plugin.name).keys())
  for field in mc.keys():
    if field not in wanted:
      raise ConfigError(f"config.method.{field} is an option of {owner(field) or 'nothing'}, "
                        f"but this config runs {active(mc)}; remove it, or choose the method "
                        "and plug-in in the config argument (e.g. configs/cifar.py:"
                        "cifar10,32,16,dgl,hpff)")
  missing = sorted(wanted - set(mc.keys()) - set(experiment.COMMON_FIELDS))
  if missing:
    raise ConfigError(f"config.method lacks {', '.join(missing)}, the options of "
                      f"{active(mc)}; choose the method and plug-in in the config argument "
                      "(e.g. configs/cifar.py:cifar10,32,16,dgl,hpff), not by overriding "
                      "method.name or method.plugin")
  base.validate(mc, split)
  plugin.validate(mc, split, base)


