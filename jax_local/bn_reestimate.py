"""Re-estimated BatchNorm statistics for evaluation ("precise BN"; docs/design.md §3.4, README
"Two test errors").

The running statistics that training keeps are an exponential moving average (momentum 0.9) of
batch statistics taken at *earlier* parameters; after a short run at a high learning rate they
lag the final network. Re-estimating them (Wu & Johnson 2021, "Rethinking 'Batch' in
BatchNorm", section 3) runs N training-mode forward passes of the backbone at fixed parameters over
augmented training batches and gives every backbone BN layer the plain average of the per-batch
statistics:

    mean* = (1/N) sum_k mu_k,    var* = (1/N) sum_k s2_k,

where mu_k, s2_k [C] are batch k's mean and biased variance over (N, H, W) of the layer's input,
each computed exactly as a training step computes them (over the global batch, or the mean over
the device groups when `model.bn_stats=per_device`). Only the backbone is re-estimated: the
evaluation forward uses no auxiliary head. The checkpoint keeps the running statistics; the
re-estimated ones exist only for evaluation.
"""
from __future__ import annotations

import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_local.engine import forward
from jax_local.models.layers import BatchNorm
from jax_local.plan import Plan


def make_batch_statistics(plan: Plan, par=None):
  """(params, stats, image [B, H, W, C]) -> {block: {"mean", "var"}} of one batch.

  A train-mode forward from zero running statistics: one update moves a running value r from 0
  to (1 - momentum) * b, so b = r / (1 - momentum) is the batch statistic itself. With `par`, the
  image is a global array sharded over the mesh and the result is replicated.
  """
  scale = 1.0 / (1.0 - BatchNorm.momentum)

  def batch_statistics(params, stats, image):
    zero = jax.tree.map(jnp.zeros_like, stats)
    h, out = image, {}
    for i in range(plan.num_modules):
      h, new = forward.apply_module(plan, i, params, zero, h, train=True)
      out.update(new)
    return jax.tree.map(lambda r: r * scale, out)

  if par is None:
    return jax.jit(batch_statistics)
  jitted = jax.jit(batch_statistics,
                   in_shardings=(par.replicated, par.replicated, par.batch_sharding),
                   out_shardings=par.replicated)
  return par.with_policy(jitted)


def reestimate(batch_statistics, params, stats, batches, num_batches: int):
  """Backbone statistics averaged over the first `num_batches` of `batches` (global batches).

  Returns `(stats with stats["backbone"] replaced, batches used, seconds)`; the average is taken
  in float64 on the host, so it does not depend on the order of accumulation.
  """
  t0 = time.time()
  total, used = None, 0
  for batch in itertools.islice(batches, num_batches):
    one = jax.tree.map(lambda x: np.asarray(x, np.float64),
                       jax.device_get(batch_statistics(params, stats, batch["image"])))
    total = one if total is None else jax.tree.map(np.add, total, one)
    used += 1
  if used == 0:
    raise ValueError("re-estimating BatchNorm statistics needs at least one training batch")
  backbone = jax.tree.map(
      lambda s, ref: jnp.asarray(s / used, ref.dtype), total,
      {b: stats["backbone"][b] for b in total})
  new_stats = {**stats, "backbone": {**stats["backbone"], **backbone}}
  return new_stats, used, time.time() - t0
