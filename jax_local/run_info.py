"""What a run's summary says about the run itself: its method label, its parameter counts, and
the software it ran with (JAX and Flax versions, the git commit of this repository); and the
flat hyperparameter fields its TensorBoard HParams entry holds."""
from __future__ import annotations

import os
import subprocess

import jax

from jax_local.analysis.run_records import method_label  # noqa: F401  (base+plugin, JAX-free)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def full_label(config) -> str:
  """"dgl+hpff, fused executor": base method, plugin and executor."""
  return f"{method_label(config)}, {config.executor} executor"


def parameter_counts(params) -> dict[str, int]:
  """{"params_backbone", "params_heads"}: the number of scalars of params["backbone"] and of
  params["heads"] (every head, the network's own classifier included, and plugin copies)."""
  count = lambda tree: int(sum(x.size for x in jax.tree.leaves(tree)))
  return {"params_backbone": count(params.get("backbone", {})),
          "params_heads": count(params.get("heads", {}))}


def git_commit(repo: str = REPO) -> str | None:
  """`git rev-parse HEAD` of `repo`, with "-dirty" if tracked files changed; None without git
  or outside a checkout."""
  try:
    commit = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                            text=True, timeout=10)
    if commit.returncode != 0:
      return None
    dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def software() -> dict:
  """{"jax_version", "flax_version", "git_commit"} (git_commit None when unknown)."""
  import flax
  return {"jax_version": jax.__version__, "flax_version": flax.__version__,
          "git_commit": git_commit()}


def hparams(config, num_modules: int, mock_examples: int = 0) -> dict:
  """The run's TensorBoard HParams fields, one flat value each, so runs can be filtered and
  sorted by method, plug-in, K, learning rate, batch or seed (config.json holds the rest)."""
  return {
      "method": method_label(config), "base_method": config.method.name,
      "plugin": config.method.get("plugin", "none") or "none", "executor": config.executor,
      "dataset": config.data.name, "model": f"{config.model.arch}{config.model.depth}",
      "split": config.split.preset, "num_modules": num_modules,
      "optimizer": config.optim.name, "lr": config.optim.lr,
      "weight_decay": config.optim.weight_decay, "schedule": config.optim.schedule,
      "batch_size": config.data.batch_size, "num_epochs": config.num_epochs,
      "train_subset": config.data.train_subset,
      "validation_size": config.data.get("validation_size", 0),
      "dtype": config.model.get("dtype", "float32"),
      "bn_recompute_batches": config.eval.bn_recompute_batches, "seed": config.seed,
      "mock_data": mock_examples,
  }
