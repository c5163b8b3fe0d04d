"""Orbax checkpoints of the whole TrainState: atomic, keep the last few, resume from the newest
readable one.

Orbax writes each step into a temporary directory and renames it when complete, so a crash while
saving leaves the previous checkpoints intact (leftover temporary directories are removed). A
completed checkpoint that cannot be read (truncated or deleted files, bad metadata) is skipped
with a warning, moved to `<workdir>/unreadable_checkpoints/` and the previous one is used. A
checkpoint whose array shapes differ from the model's raises `CheckpointMismatch` naming a
differing parameter, before orbax is asked to restore anything.

Several processes (multi-host): every process calls `save` and `restore` on the same directory,
which must be on a file system all hosts share; orbax writes each replicated array once and
coordinates the commit. `restore(template)` takes the shardings of `template`'s leaves (arrays or
`jax.ShapeDtypeStruct`s with a sharding, e.g. `parallel.Parallel.abstract_state`), so arrays are
read straight into place, replicated over the mesh, without building the state first.
"""
from __future__ import annotations

import os
import shutil
import time

import flax.serialization
import jax
import orbax.checkpoint as ocp

from jax_local.run_log import LOG


class CheckpointMismatch(ValueError):
  """The checkpoint holds a different model (or optimizer) than the config builds."""


class UnreadableCheckpoints(RuntimeError):
  """Checkpoints exist but none can be read."""


def _path_str(path) -> str:
  return "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)


def _shapes(tree) -> dict[str, tuple]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {_path_str(p): tuple(getattr(x, "shape", ())) for p, x in leaves}


def compare_shapes(saved: dict, expected: dict, where: str) -> None:
  """Raises CheckpointMismatch if the {path: shape} maps differ, naming one difference."""
  missing = sorted(set(expected) - set(saved))
  extra = sorted(set(saved) - set(expected))
  differ = sorted((p for p in set(saved) & set(expected) if saved[p] != expected[p]),
                  key=lambda p: (not p.startswith("params/"), p))  # name a parameter first
  if not (missing or extra or differ):
    return
  counts = f"{len(differ)} shapes differ, {len(missing)} arrays missing, {len(extra)} extra"
  if differ:
    p = differ[0]
    first = f"'{p}' has shape {saved[p]} in the checkpoint but {expected[p]} in the model"
  elif missing:
    first = f"the model's '{missing[0]}' is not in the checkpoint"
  else:
    first = f"the checkpoint's '{extra[0]}' is not in the model"
  raise CheckpointMismatch(
      f"{where} does not match the model built from this config: {first} ({counts}). The "
      "config changed since the checkpoint was written (see the config diff above): restore "
      "the old config or use a new --workdir.")


class Checkpointer:
  """Wraps an orbax CheckpointManager over `directory` (created if needed)."""

  def __init__(self, directory: str, max_to_keep: int):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory, item_handlers=ocp.StandardCheckpointHandler(),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             cleanup_tmp_directories=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, state) -> None:
    step = int(jax.device_get(state.step))
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.StandardSave(flax.serialization.to_state_dict(state)))

  def restore(self, template):
    """Restores the newest readable checkpoint into the structure of `template`, or None.

    Raises CheckpointMismatch (shapes differ) or UnreadableCheckpoints (none can be read).
    """
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                          flax.serialization.to_state_dict(template))
    failed = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      where = f"checkpoint {os.path.join(self.directory, str(step))}"
      try:
        saved = _shapes(self._manager.item_metadata(step).tree)
      except Exception as e:  # noqa: BLE001 - any failure to read means unusable
        failed.append(self._unreadable(step, where, e))
        continue
      compare_shapes(saved, _shapes(target), where)
      try:
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
      except Exception as e:  # noqa: BLE001
        failed.append(self._unreadable(step, where, e))
        continue
      self._quarantine(failed)
      return flax.serialization.from_state_dict(template, restored)
    if failed:
      raise UnreadableCheckpoints(
          f"none of the checkpoints {failed} in {self.directory} can be read (see the warnings "
          "above); move the directory away to start from scratch")
    return None

  def _unreadable(self, step: int, where: str, error: Exception) -> int:
    LOG.warning("%s is unreadable (%s: %s); falling back to the previous checkpoint",
                where, type(error).__name__, str(error).splitlines()[0][:300])
    return step

  def _quarantine(self, steps) -> None:
    """Moves unreadable steps out of the way, so later saves of those steps can happen."""
    if not steps:
      return
    if jax.process_index() == 0:
      dest = os.path.join(os.path.dirname(self.directory), "unreadable_checkpoints")
      os.makedirs(dest, exist_ok=True)
      for step in steps:
        target = os.path.join(dest, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(os.path.join(self.directory, str(step)), target)
        LOG.warning("moved unreadable checkpoint %d to %s", step, target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices("jax_local_checkpoint_quarantine")
    self._manager.reload()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
