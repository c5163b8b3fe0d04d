"""The end of a training step, shared by the executors: the BatchNorm rule, the step counter
and the step's metrics (docs/design.md §3.3, §3.5, §3.6).

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


def finish(plan, schedule, step, stats, new_stats, losses, sqs):
  """(step + 1, statistics, metrics) after a step's gradients.

  stats / new_stats: {"backbone": {block: …}, "heads": {head: …}} before the step and from its
  forward passes (new_stats["heads"] may hold only the heads that ran); the backbone's get the
  plan's number of updates per step (`forward.repeat_bn_updates`, docs/design.md §3.3).
  losses: the step's Σ weight·loss in pieces; sqs: squared norms of the gradient in pieces.
  metrics: "loss" = Σ losses, "lr" = schedule(step), "grad_norm" = sqrt(Σ sqs).
  """
  zero = jnp.zeros((), jnp.float32)
  stats = {"backbone": forward.repeat_bn_updates(plan, stats["backbone"], new_stats["backbone"]),
           "heads": {**stats["heads"], **new_stats["heads"]}}
  metrics = {"loss": sum(losses, zero), "lr": schedule(step),
             "grad_norm": jnp.sqrt(sum(sqs, zero))}
  return step + 1, stats, metrics
