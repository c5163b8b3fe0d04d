"""What every executor's step offers: the training step, compile-only analysis, and placement
on a device mesh (docs/design.md §3.5, §3.6, §8). The trainer, the memory report and
`parallel.py` use an executor through this interface only.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable

import jax


@dataclasses.dataclass(frozen=True)
class Placement:
  """Where a step's inputs and outputs live (docs/design.md §8).

  state: the state's shardings from the state (a pytree of them); batch: the batch's sharding
  (along its first axis); replicated: the sharding of metrics; one_at_a_time: run each
  program to completion before the next is dispatched (several XLA:CPU devices, where
  independent programs with collectives in flight can wait on each other for ever).
  """
  state: Callable[[Any], Any]
  batch: jax.sharding.Sharding
  replicated: jax.sharding.Sharding
  one_at_a_time: bool


class Executor(abc.ABC):
  """A plan's training step: (state, batch) -> (state, metrics), metrics with "loss",
  "grad_norm" and "<term>/<metric>" for every term; the state is donated.

  updates_per_step: optimizer updates one step makes, which the learning-rate schedule counts
  (step k's first update is update k·updates_per_step); the trainer logs the learning rate from
  it (docs/design.md §3.8).
  """

  updates_per_step: int = 1

  @abc.abstractmethod
  def __call__(self, state, batch):
    """One step on one device (inputs uncommitted or on one device)."""

  @abc.abstractmethod
  def lower(self, state, batch) -> list[jax.stages.Lowered]:
    """Every distinct program of a step, lowered for `state` and `batch` (abstract shapes are
    enough; nothing runs)."""

  @abc.abstractmethod
  def placed(self, placement: Placement) -> Callable:
    """The step on global arrays placed as `placement` (state replicated, batch sharded)."""
