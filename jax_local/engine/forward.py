"""Forward computations shared by every executor: modules, loss terms, evaluation.

Parameters and statistics are nested dicts `{"backbone": {block: ...}, "heads": {head: ...}}`.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jax_local.models.backbone import apply_block, apply_with_stats
from jax_local.models.layers import BatchNorm
from jax_local.plan import LossTerm, Plan


def apply_module(plan: Plan, i: int, params, stats, h, train: bool = True):
  """E_i(h): runs the blocks of module i; returns `(out, {block: new_stats})`."""
  new_stats = {}
  for name in plan.modules[i]:
    h, new_stats[name] = apply_block(plan.backbone.module(name), params["backbone"][name],
                                     stats["backbone"][name], h, train)
  return h, new_stats


def with_image01(batch, normalisation):
  """Adds the decoder target x01 = image * std + mean (docs/methods.md notation), image
  [N,H,W,C]; normalisation: a plan's (mean, std) per channel (`Plan.normalisation`)."""
  if normalisation is None:
    raise ValueError("the plan holds no input normalisation: build it with the dataset's "
                     "(mean, std) (experiment.build_plan) to run it")
  mean, std = (jnp.asarray(v, jnp.float32) for v in normalisation)
  return {**batch, "image01": batch["image"] * std + mean}


def apply_head(plan: Plan, term: LossTerm, params, stats, h, batch):
  """Runs a term's head in train mode; returns `(loss, metrics, new_head_stats)`."""
  head = plan.heads[term.head]
  (loss, metrics), new_stats = apply_with_stats(head, params["heads"].get(term.head, {}),
                                                stats["heads"].get(term.head, {}), h, batch,
                                                train=True)
  return loss, metrics, new_stats


def canonical_forward(plan: Plan, params, stats, image):
  """a_{i+1} = E_i(sg(a_i)) for every module, once per step.

  Returns `(outputs, new_backbone_stats)` with outputs[i] = E_i(sg(a_i)). Each module's BN
  statistics are updated once per step, whatever number of terms use the module.
  """
  outputs, new_stats = [], {}
  h = image
  for i in range(plan.num_modules):
    h, s = apply_module(plan, i, params, stats, jax.lax.stop_gradient(h), train=True)
    outputs.append(h)
    new_stats.update(s)
  return outputs, new_stats


def repeat_bn_updates(plan: Plan, old, new, momentum: float = BatchNorm.momentum):
  """Backbone BN statistics as if module m had been called `plan.bn_updates[m]` times (quirk Q23).

  One train-mode call updates a running average r_1 = μ·r_0 + (1−μ)·b; n calls with the same
  input (same batch statistic b) give r_n = μ^n·r_0 + (1−μ^n)·b = r_0 + (1−μ^n)/(1−μ)·(r_1 − r_0).
  old / new: {block: stats} before and after the step's single update (the blocks of `new` only:
  a pipeline stage's); returns the n-call stats.
  """
  out = dict(new)
  for m, n in enumerate(plan.bn_updates):
    if n > 1:
      scale = (1 - momentum ** n) / (1 - momentum)
      for b in (b for b in plan.modules[m] if b in new):
        out[b] = jax.tree.map(lambda r0, r1: r0 + scale * (r1 - r0), old[b], new[b])
  return out


def term_features(plan: Plan, term: LossTerm, params, stats, outputs):
  """E_last(...E_first(sg(a_first))): reuses outputs[first], recomputes later window modules."""
  h = outputs[term.first]
  for m in range(term.first + 1, term.last + 1):
    h, _ = apply_module(plan, m, params, stats, h, train=True)
  return h


def evaluate_logits(plan: Plan, params, stats, image):
  """Plain forward in eval mode (running BN statistics, no auxiliary heads): logits [N, classes]."""
  h = image
  for i in range(plan.num_modules):
    h, _ = apply_module(plan, i, params, stats, h, train=False)
  return h
