"""The whole training state as one pytree, checkpointed whole."""
from __future__ import annotations

from typing import Any

import dataclasses

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jax_local import plugins
from jax_local.engine import forward
from jax_local.models import layers
from jax_local.plan import Plan


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array     # global optimizer step (int32 scalar)
  params: Any         # {"backbone": {block: params}, "heads": {head: params}}
  batch_stats: Any    # same structure; BN running statistics, never differentiated
  opt_state: Any


def init_state(plan: Plan, tx: optax.GradientTransformation, rng, image_shape,
               batch_size: int = 2) -> TrainState:
  """Initialises backbone blocks in order, then each head on its term's feature shape.

  image_shape: (H, W, C). Heads receive a dummy batch {"image", "image01", "label"}.
  Parameters are float32 whatever the compute dtype; the dummy forward passes use one BatchNorm
  group (their statistics are discarded), so `batch_size` need not divide into per-device groups.
  """
  with layers.policy(dataclasses.replace(layers.current_policy(), bn_groups=1)):
    return _init_state(plan, tx, rng, image_shape, batch_size)


def _init_state(plan, tx, rng, image_shape, batch_size):
  x = jnp.zeros((batch_size, *image_shape), jnp.float32)
  bb_params, bb_stats, _ = plan.backbone.init(jax.random.fold_in(rng, 0), x)
  params = {"backbone": bb_params, "heads": {}}
  stats = {"backbone": bb_stats, "heads": {}}
  batch = {"image": x, "image01": x, "label": jnp.arange(batch_size, dtype=jnp.int32) % 2}
  # Feature shape at the end of each module, from an abstract forward.
  outputs = jax.eval_shape(
      lambda p, s: forward.canonical_forward(plan, p, s, x)[0], params, stats)
  for k, term in enumerate(plan.terms):
    head = plan.heads[term.head]
    if term.head in params["heads"]:
      continue
    h = jnp.zeros(outputs[term.last].shape, jnp.float32)
    variables = head.init(jax.random.fold_in(rng, 1000 + k), h, batch, train=True)
    params["heads"][term.head] = variables.get("params", {})
    stats["heads"][term.head] = variables.get("batch_stats", {})
  params = plugins.init_copies(plan, params)  # copies declared copy_of_target start as their source
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                    opt_state=tx.init(params))
