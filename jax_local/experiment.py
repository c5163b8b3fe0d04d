"""build(config): the one assembly point of an experiment (docs/design.md §2-§3).

From a validated config (`config_validation.validate_config`, run once before this) it builds
the backbone, the split, the plan of the selected base method and plug-in (`jax_local.methods`,
`jax_local.plugins`) with the dataset's input normalisation, the optimizer and LR schedule, and
names the dataset's facts (`data.catalog`). The trainer, the memory report, the analysis tools
and the benchmarks all assemble through here. `method_config` gives the `config.method` section
of a selection: the selected base's and plug-in's fields with their defaults, and nothing of the
others.
"""
from __future__ import annotations

import dataclasses
import math

import ml_collections

from jax_local import engine, methods, optim, part_optimizer, plugins, splits
from jax_local.data import catalog
from jax_local.models import build_backbone
from jax_local.models.backbone import Backbone
from jax_local.plan import Plan

COMMON_FIELDS = {"name": None, "plugin": "none",
                 # Q23: a module's BN running statistics get one update per term whose window
                 # holds it (the references run it that often per step: up to 3 under HiLo, 4
                 # under MLM); False: one update per step (docs/methods.md §1.2)
                 "replicate_bn_calls": True}


def method_config(name: str, plugin: str = "none") -> ml_collections.ConfigDict:
  """`config.method` of base `name` with `plugin`: their fields at their defaults. An unknown
  name gets no fields (validation names the valid ones)."""
  mc = ml_collections.ConfigDict({**COMMON_FIELDS, "name": name, "plugin": plugin})
  for registry, key in ((methods.REGISTRY, name), (plugins.REGISTRY, plugin)):
    if key in registry:
      for field, value in registry.get(key).defaults().items():
        mc[field] = value
  return mc


def build_plan(mc, backbone: Backbone, split, num_classes: int,
               normalisation: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> Plan:
  """The plan of base `mc.name` on `backbone` cut by `split`, rewritten by `mc.plugin`; with
  `replicate_bn_calls`, each module's BN statistics are updated once per covering term.
  normalisation: the dataset's (mean, std) (`Plan.normalisation`); None gives a plan to
  inspect, not to run."""
  base = methods.REGISTRY.get(mc.name)
  plan = base.plan(mc, backbone, split, num_classes)
  plan = plugins.REGISTRY.get(plugins.plugin_name(mc)).rewrite(mc, plan, split, num_classes, base)
  if mc.get("replicate_bn_calls", True):
    plan = dataclasses.replace(
        plan, bn_updates=tuple(max(1, plan.num_terms_covering(m)) for m in range(plan.num_modules)))
  if normalisation is not None:
    plan = dataclasses.replace(plan, normalisation=tuple(map(tuple, normalisation)))
  return plan


def split_of(config) -> splits.Split:
  return splits.get_split(config.split.preset, config.model.depth, config.model.arch)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What the model side needs of a dataset: image shape (H, W, C), class count, normalisation."""
  image_shape: tuple[int, int, int]
  num_classes: int
  mean: tuple[float, ...]
  std: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class Experiment:
  backbone: Backbone
  split: splits.Split
  plan: Plan
  tx: part_optimizer.PartOptimizer   # the optimizer run part by part, with the plan's EMA pairs
  base_tx: object                    # the optax optimizer of one part
  schedule: object                   # step -> learning rate
  steps_per_epoch: int
  dataset: DatasetSpec


def dataset_spec(config) -> DatasetSpec:
  """The catalog's facts of `config.data.name` at the trained image size; ValueError for a
  dataset whose shape depends on its files (an image folder: pass the loaded dataset)."""
  name = config.data.name
  info = catalog.DATASETS[name]
  if info.image_shape is None:
    raise ValueError(f"config.data.name={name!r}: its image shape depends on the files; "
                     "without them, known are " + ", ".join(
                         n for n, d in catalog.DATASETS.items() if d.image_shape is not None))
  shape = info.image_shape
  if config.data.get("image_size", 0):
    shape = (config.data.image_size, config.data.image_size, shape[-1])
  return DatasetSpec(shape, config.data.num_classes, info.mean, info.std)


def build(config, dataset=None) -> Experiment:
  """The experiment of a validated config. dataset: the loaded one (`data.Dataset`: its shape,
  classes and steps per epoch); None: the catalog's facts, the data never loaded."""
  if dataset is None:
    spec = dataset_spec(config)
    num_train = catalog.DATASETS[config.data.name].num_train
    subset = config.data.get("train_subset", 0)
    num_train = min(num_train, subset) if subset else num_train
    steps = math.ceil(num_train / config.data.batch_size)
  else:
    spec = DatasetSpec(tuple(dataset.image_shape), dataset.num_classes, tuple(dataset.mean),
                       tuple(dataset.std))
    steps = dataset.steps_per_epoch(config.data.batch_size, config.data.drop_remainder)
  split = split_of(config)
  backbone = build_backbone(config.model, spec.num_classes)
  plan = build_plan(config.method, backbone, split, spec.num_classes, (spec.mean, spec.std))
  updates = steps * engine.updates_per_step(config.get("executor"), config.get("pipeline"))
  schedule = optim.make_schedule(config.optim, config.num_epochs, updates)
  base_tx = optim.make_optimizer(config.optim, config.num_epochs, updates)
  return Experiment(backbone, split, plan, part_optimizer.PartOptimizer(base_tx, plan.ema_pairs),
                    base_tx, schedule, steps, spec)
