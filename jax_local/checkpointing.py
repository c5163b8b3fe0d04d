"""Orbax checkpoints of the whole TrainState: atomic, keep the last few, resume from the newest."""
from __future__ import annotations

import os

import flax.serialization
import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Wraps an orbax CheckpointManager over `directory` (created if needed).

  Orbax writes each step into a temporary directory and renames it when complete, so a crash
  while saving leaves the previous checkpoints intact.
  """

  def __init__(self, directory: str, max_to_keep: int):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, state) -> None:
    step = int(jax.device_get(state.step))
    if step in self._manager.all_steps():
      return
    self._manager.save(step, args=ocp.args.StandardSave(flax.serialization.to_state_dict(state)))

  def restore(self, template):
    """Restores the newest checkpoint into the structure of `template` (or returns None)."""
    step = self._manager.latest_step()
    if step is None:
      return None
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct,
                          flax.serialization.to_state_dict(template))
    restored = self._manager.restore(step, args=ocp.args.StandardRestore(target))
    return flax.serialization.from_state_dict(template, restored)

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
