"""Restore a trained run from its workdir and compute its per-module outputs.

    run = load_run("runs/fm_dgl")            # config.json -> ConfigDict -> experiment.build -> restore
    feats = module_features(run, images)     # one array per module, eval mode

The config is the run's own `config.json`; the plan, optimizer and state template come from
`experiment.build` and `init_state`, exactly as in training, and the newest readable checkpoint is
restored into them. Checkpoints are opened read-only (no temporary-directory clean-up, no
quarantine), so a run that is still training can be analysed without disturbing it.

Modules analysed: the gradient-isolated modules of the run's plan. BP's plan is one module, so a
BP run is cut at its config's split (`config.split.preset`) instead, which puts its cuts where the
local methods of the same split have theirs. A module's features are the output of its last
block, except for the last module, whose features are the input of the network's classifier
block (the classifier is linear after pooling, so its logits carry less than its input).
"Pooled" features are averaged over the spatial dimensions (global average pooling).
"""
from __future__ import annotations

import dataclasses
import json
import os

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jax_local import checkpointing, experiment
from jax_local.analysis.run_records import RunError, method_label, read_config
from jax_local.engine import forward
from jax_local.plan import Plan, modules_from_ranges
from jax_local.run_log import LOG

__all__ = ["RunError", "LoadedRun", "load_run", "module_features", "train_images", "test_images",
           "read_config", "method_label"]


@dataclasses.dataclass
class LoadedRun:
  workdir: str
  label: str                       # e.g. "dgl+hpff (dgl_hpff)"
  config: ml_collections.ConfigDict
  dataset: object                  # jax_local.data.input_pipeline.Dataset
  plan: Plan                       # the training plan
  feature_plan: Plan               # analysed modules, then the classifier block as a last module
  module_names: tuple[str, ...]    # blocks of each analysed module, e.g. "stem..s1b0"
  feature_blocks: tuple[str, ...]  # block whose output is module i's feature
  params: dict
  batch_stats: dict
  step: int

  @property
  def num_modules(self) -> int:
    return len(self.feature_blocks)


_DATASETS = {}


def load_dataset(config, data_dir: str | None = None):
  """The run's dataset (its own train subset); one load per distinct data config per process."""
  from jax_local.data import input_pipeline
  data = config.data.copy_and_resolve_references()
  if data_dir:
    data.tfds_data_dir = data_dir
  key = json.dumps(data.to_dict(), sort_keys=True, default=str)
  if key not in _DATASETS:
    _DATASETS[key] = input_pipeline.build_dataset(data, config.seed)
  return _DATASETS[key]


def analysis_modules(plan: Plan, config) -> tuple[tuple[str, ...], ...]:
  """Block names of the modules to analyse (see the module docstring for BP)."""
  if plan.num_modules > 1:
    return plan.modules
  return modules_from_ranges(plan.backbone, experiment.split_of(config).module_ranges)


def _feature_plan(plan: Plan, modules) -> tuple[Plan, tuple[str, ...], tuple[str, ...]]:
  classifier = plan.backbone.block_names[-1]
  last = tuple(b for b in modules[-1] if b != classifier)
  if not last:
    raise RunError(f"the last module holds only the classifier block {classifier!r}")
  cut = tuple(modules[:-1]) + (last,)
  feature_plan = dataclasses.replace(plan, modules=cut + ((classifier,),), terms=(), heads={},
                                     description="analysis")
  names = tuple(m[0] if len(m) == 1 else f"{m[0]}..{m[-1]}" for m in cut)
  return feature_plan, names, tuple(m[-1] for m in cut)


def cut_at(plan: Plan, blocks) -> tuple[tuple[str, ...], ...]:
  """The backbone's blocks grouped into modules ending at `blocks` (in order), the rest after."""
  names = plan.backbone.block_names
  unknown = [b for b in blocks if b not in names]
  if unknown:
    raise RunError(f"blocks {unknown} are not in the backbone {plan.backbone.name} "
                   f"({', '.join(names)})")
  ends = [names.index(b) for b in blocks]
  if ends != sorted(set(ends)):
    raise RunError(f"blocks {list(blocks)} are not in network order")
  starts = [0] + [e + 1 for e in ends[:-1]]
  modules = [names[a:e + 1] for a, e in zip(starts, ends)]
  modules[-1] = modules[-1] + names[ends[-1] + 1:]
  return tuple(tuple(m) for m in modules)


BEST = "best_checkpoint"
"""The folder of a run's best-validation checkpoint, beside `checkpoints/` (`train.BestCheckpoint`)."""


def checkpoint_dir(workdir: str, folder: str = "checkpoints") -> str:
  """`workdir/<folder>` ("checkpoints", or `BEST`); RunError if it holds no completed one."""
  directory = os.path.abspath(os.path.join(workdir, folder))
  if not (os.path.isdir(directory) and any(n.isdigit() for n in os.listdir(directory))):
    if folder == BEST:
      raise RunError(f"{workdir}: no checkpoint in {directory} (only a run with "
                     "data.validation_size > 0 keeps a best-validation checkpoint, after its "
                     "first evaluation)")
    raise RunError(f"{workdir}: no checkpoint in {directory} (the run has not completed its "
                   "first checkpoint, at the end of epoch 1 or after checkpoint_every_steps)")
  return directory


def restore_state(workdir: str, template, step: int | None = None,
                  folder: str = "checkpoints"):
  """(state, step) from the newest readable checkpoint in `workdir/<folder>` (or the one of
  `step`: a RunError lists the saved steps if there is none), opened read-only."""
  import orbax.checkpoint as ocp
  directory = checkpoint_dir(workdir, folder)
  manager = ocp.CheckpointManager(
      directory, item_handlers=ocp.StandardCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(read_only=True, create=False,
                                           cleanup_tmp_directories=False))
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                        flax.serialization.to_state_dict(template))
  errors, steps = [], []
  try:
    steps = sorted(manager.all_steps(), reverse=True)
    if step is not None:
      if step not in steps:
        raise RunError(f"{workdir}: no checkpoint of step {step} in {directory}; saved steps: "
                       f"{', '.join(map(str, sorted(steps))) or 'none'}")
      steps = [step]
    for step in steps:
      where = f"checkpoint {os.path.join(directory, str(step))}"
      try:
        saved = checkpointing._shapes(manager.item_metadata(step).tree)  # noqa: SLF001
        checkpointing.compare_shapes(saved, checkpointing._shapes(target), where)  # noqa: SLF001
        restored = manager.restore(step, args=ocp.args.StandardRestore(target))
      except checkpointing.CheckpointMismatch:
        raise
      except Exception as e:  # noqa: BLE001 - deleted by a running trainer, truncated, ...
        LOG.warning("%s is unreadable (%s); trying the previous one", where,
                    str(e).splitlines()[0][:200])
        errors.append(step)
        continue
      return flax.serialization.from_state_dict(template, restored), step
  finally:
    manager.close()
  raise RunError(f"{workdir}: none of the checkpoints {errors or steps} in {directory} can be read")


def load_run(workdir: str, data_dir: str | None = None) -> LoadedRun:
  """Rebuilds a run's plan from its config.json and restores its newest checkpoint."""
  from jax_local.train_state import init_state
  workdir = os.path.abspath(workdir)
  config = read_config(workdir)
  checkpoint_dir(workdir)  # fails before the data are loaded
  dataset = load_dataset(config, data_dir)
  exp = experiment.build(config, dataset)
  plan, tx = exp.plan, exp.tx
  template = jax.eval_shape(
      lambda: init_state(plan, tx, jax.random.PRNGKey(config.seed), dataset.image_shape))
  state, step = restore_state(workdir, template)
  modules = analysis_modules(plan, config)
  feature_plan, names, blocks = _feature_plan(plan, modules)
  label = f"{method_label(config)} ({os.path.basename(workdir.rstrip('/'))})"
  return LoadedRun(workdir, label, config, dataset, plan, feature_plan, names, blocks,
                   state.params, state.batch_stats, step)


_FORWARDS = {}


def _pool(h):
  return jnp.mean(h, axis=(1, 2)) if h.ndim == 4 else h


def _make_forward(feature_plan: Plan, pooled: bool):
  k = feature_plan.num_modules - 1

  def fn(params, stats, images):
    h, outs = images, []
    for i in range(k):
      h, _ = forward.apply_module(feature_plan, i, params, stats, h, train=False)
      outs.append(_pool(h) if pooled else h)
    logits, _ = forward.apply_module(feature_plan, k, params, stats, h, train=False)
    return outs, logits

  return jax.jit(fn)


def module_features(run: LoadedRun, images: np.ndarray, pooled: bool = True,
                    batch_size: int = 250, blocks=None) -> tuple[list[np.ndarray], np.ndarray]:
  """Eval-mode (running BN statistics) features of every analysed module and the logits.

  images: normalised float32 [N, H, W, C]. blocks: read the features at the outputs of these
  blocks instead of the run's module ends (e.g. another run's cuts, for CKA). Returns
  ([module i: [N, C_i] pooled, or [N, H_i, W_i, C_i]], logits [N, classes]). Batches are padded
  to `batch_size` (one compile per run and kind of features).
  """
  feature_plan = run.feature_plan
  if blocks is not None:
    feature_plan = _feature_plan(run.plan, cut_at(run.plan, blocks))[0]
  # the config determines the plan, so runs of one config share the compiled forward
  key = (run.config.to_json(), feature_plan.modules, pooled)
  if key not in _FORWARDS:
    _FORWARDS[key] = _make_forward(feature_plan, pooled)
  fn = _FORWARDS[key]
  n = len(images)
  b = batch_size
  feats, logits = [[] for _ in range(feature_plan.num_modules - 1)], []
  for start in range(0, n, b):
    chunk = images[start:start + b]
    real = len(chunk)
    if real < b:
      chunk = np.concatenate([chunk, np.zeros((b - real, *chunk.shape[1:]), chunk.dtype)])
    outs, lg = jax.device_get(fn(run.params, run.batch_stats, jnp.asarray(chunk)))
    for i, o in enumerate(outs):
      feats[i].append(np.asarray(o[:real]))
    logits.append(np.asarray(lg[:real]))
  return [np.concatenate(f) for f in feats], np.concatenate(logits)


def train_images(run: LoadedRun, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The run's first `limit` training images (all if 0), normalised, not augmented; labels."""
  ds = run.dataset
  n = ds.num_train if limit <= 0 else min(limit, ds.num_train)
  return ds.normalise(ds.train_images[:n]), np.asarray(ds.train_labels[:n])


def test_images(run: LoadedRun, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """The first `limit` test images (all if 0), normalised; labels."""
  ds = run.dataset
  n = ds.num_test if limit <= 0 else min(limit, ds.num_test)
  return ds.normalise(ds.test_images[:n]), np.asarray(ds.test_labels[:n])
