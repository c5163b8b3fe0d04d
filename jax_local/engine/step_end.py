"""The end of a training step, shared by the executors: the BatchNorm rule, the step counter
and the step's metrics (docs/design.md §3.3, §3.5, §3.6). The learning rate is not among them:
the trainer logs it from the schedule (docs/design.md §3.8).

The fused executor reaches it with its whole-tree gradient, the sequential one with the
per-program pieces it gathered; both then give the same statistics and metrics.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jax_local.engine import forward


def sumsq(trees):
  """Σ x² over every leaf of `trees` (a float32 scalar): a squared gradient norm."""
  return sum((jnp.sum(x * x) for x in jax.tree.leaves(trees)), jnp.zeros((), jnp.float32))


def statistics(plan, stats, new_stats):
  """The BatchNorm rule: statistics after a step from those before (`stats`) and those of its
  forward passes (`new_stats`), both {"backbone": {block: …}, "heads": {head: …}}; the backbone's
  get the plan's number of updates per step (`forward.repeat_bn_updates`, docs/design.md §3.3).
  new_stats may hold only some parts (the heads that ran, or one pipeline stage's parts: then
  `stats` holds that stage's parts too)."""
  return {"backbone": forward.repeat_bn_updates(plan, stats["backbone"], new_stats["backbone"]),
          "heads": {**stats["heads"], **new_stats["heads"]}}


def step_metrics(step, losses, sqs):
  """(step + 1, metrics): "loss" = Σ losses, "grad_norm" = sqrt(Σ sqs). losses: the step's
  Σ weight·loss in pieces; sqs: squared norms of the gradient in pieces."""
  zero = jnp.zeros((), jnp.float32)
  return step + 1, {"loss": sum(losses, zero), "grad_norm": jnp.sqrt(sum(sqs, zero))}


def finish(plan, step, stats, new_stats, losses, sqs):
  """(step + 1, statistics, metrics) after a step's gradients: `statistics` and
  `step_metrics`."""
  step, metrics = step_metrics(step, losses, sqs)
  return step, statistics(plan, stats, new_stats), metrics
