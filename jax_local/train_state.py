"""The whole training state as one pytree, checkpointed whole."""
from __future__ import annotations

from typing import Any

import dataclasses
import functools

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jax_local.plugins import copies
from jax_local.engine import forward
from jax_local.heads import coefficients
from jax_local.models import layers
from jax_local.plan import Plan


class TrainState(flax.struct.PyTreeNode):
  step: jax.Array     # global optimizer step (int32 scalar)
  params: Any         # {"backbone": {block: params}, "heads": {head: params}}
  batch_stats: Any    # same structure; BN running statistics, never differentiated
  opt_state: Any


def _init_head(head, rng, h, batch):
  """(params, batch_stats) of a freshly initialised head on features h."""
  variables = head.init(rng, h, batch, train=True)
  return variables.get("params", {}), variables.get("batch_stats", {})


def init_state(plan: Plan, tx: optax.GradientTransformation, rng, image_shape,
               batch_size: int = 2) -> TrainState:
  """Initialises backbone blocks in order, then each head on its term's feature shape.

  image_shape: (H, W, C). Heads receive a dummy batch {"image", "image01", "label"}. Blocks and
  heads are initialised by jitted programs shared by equal blocks / heads, so called outside a
  jit it compiles a handful of small programs (a jitted whole init of ResNet-110 K=55 with HPFF
  heads took minutes of XLA:CPU compile).
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
  programs = {}
  for k, term in enumerate(plan.terms):
    if term.head in params["heads"]:
      continue
    # loss coefficients do not shape parameters: heads differing only in them share a program
    structure, _ = coefficients.factor(plan.heads[term.head])
    if structure not in programs:
      programs[structure] = jax.jit(functools.partial(_init_head, structure))
    h = jnp.zeros(outputs[term.last].shape, jnp.float32)
    params["heads"][term.head], stats["heads"][term.head] = programs[structure](
        jax.random.fold_in(rng, 1000 + k), h, batch)
  params = copies.init_copies(plan, params)  # copies declared copy_of_target start as their source
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=stats,
                    opt_state=jax.jit(tx.init)(params))   # one program, not one per leaf shape
