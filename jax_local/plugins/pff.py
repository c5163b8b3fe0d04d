"""Patch Feature Fusion (HPFF, docs/methods.md §7.2; quirk Q12).

Modes (`config.method.pff.mode`):
- code_quadrant_decoders: the released CIFAR code. The CAN decoder is four InfoPro 2c decoders
  with their own weights: quadrant q of h is decoded at the size of quadrant q of x01 (img/2) and
  the four BCEs are summed; the classifiers see the whole map (`QuadrantDecoderHead`).
- paper_shared_avg: the paper. One auxiliary net with parameters shared across the P patches of
  a `grid` (gh, gw); loss and metrics are the mean over patches (`PatchHead`). Each patch's
  decoder target is the matching patch of x01 (and "image"). `apply_to` picks decoder,
  classifier or both. The per-patch loop is `vmap` (all patches at once: speed) or `lax.scan`
  over a `jax.checkpoint`ed body (one patch live in the backward: memory), or an `unrolled`
  Python loop (the only one allowed when the grid does not divide H×W).
- off: no patches.
Patches: for an axis of size S cut into g parts, part i is [⌊iS/g⌋, ⌊(i+1)S/g⌋) (the reference's
[:S//2], [S//2:] for g = 2), row-major over the grid; they tile the map exactly.
BN running statistics of a shared patch net: every patch runs in train mode with its own batch
statistics; the stored running statistics become the mean over patches of the per-patch updates
(identical for all loops; aux nets never run at test time, §1.2).
"""
from __future__ import annotations

from typing import Sequence

import flax.errors
import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_local import losses
from jax_local.heads.infopro import Decoder
from jax_local.models.backbone import apply_with_stats

MODES = ("code_quadrant_decoders", "paper_shared_avg", "off")
APPLY_TO = ("decoder", "classifier", "both")
LOOPS = ("vmap", "scan", "unrolled")


def patch_bounds(size: int, parts: int) -> list[tuple[int, int]]:
  """[(start, stop)] of `parts` contiguous pieces of an axis of `size`."""
  return [((i * size) // parts, ((i + 1) * size) // parts) for i in range(parts)]


def split_patches(x, grid: Sequence[int]) -> list:
  """x [N,H,W,C] -> gh·gw patches [N, h_i, w_j, C], row-major over the (gh, gw) grid."""
  gh, gw = grid
  return [x[:, r0:r1, c0:c1, :] for r0, r1 in patch_bounds(x.shape[1], gh)
          for c0, c1 in patch_bounds(x.shape[2], gw)]


def even(x, grid: Sequence[int]) -> bool:
  return x.shape[1] % grid[0] == 0 and x.shape[2] % grid[1] == 0


class QuadrantDecoderHead(nn.Module):
  """λ_rec·Σ_q BCE(Decoder_q(h_q), x01_q) over the 2x2 quadrants, own decoder each (§7.2 code).

  h [N,H,W,C]; target batch["image01"] [N,Hi,Wi,Ci]; decoder q: resize h_q to x01_q's size
  (align_corners) → conv3x3(C→12·widen, bias) → BN → ReLU → conv3x3(→Ci, bias). Metrics: loss, bce.
  """
  lambda_rec: float
  widen: float = 1
  bce_torch_clamp: bool = False
  coefficient_fields = ("lambda_rec",)

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    target = batch["image01"]
    bce = jnp.zeros((), jnp.float32)
    for q, (hq, tq) in enumerate(zip(split_patches(h, (2, 2)), split_patches(target, (2, 2)))):
      logits = Decoder(self.widen, tq.shape[-1], name=f"decoder_q{q}")(hq, tq.shape[1:3], train)
      bce = bce + losses.bce_with_logits(logits, tq, self.bce_torch_clamp)
    loss = self.lambda_rec * bce
    return loss, {"loss": loss, "bce": bce}


class PatchHead(nn.Module):
  """Runs `inner` (a head) on each patch with shared parameters; mean loss and metrics (§7.2 paper).

  h [N,H,W,C] -> patches by `grid`; patch p gets batch {image_p, image01_p, label}. loop: vmap |
  scan (checkpointed body) | unrolled. The inner head's params live at params["patch_net"], its
  BN statistics at batch_stats["patch_net"].
  """
  inner: nn.Module
  grid: tuple[int, int] = (2, 2)
  loop: str = "vmap"

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    if self.loop not in LOOPS:
      raise ValueError(f"pff.patch_loop={self.loop!r} is unknown; valid: {', '.join(LOOPS)}")
    net = self.inner.clone(parent=None)
    keys = [k for k in ("image", "image01") if k in batch]
    h_p = split_patches(h, self.grid)
    x_p = {k: split_patches(batch[k], self.grid) for k in keys}
    pbatch = lambda p: {**batch, **{k: x_p[k][p] for k in keys}}
    params = self.param("patch_net", lambda rng: net.init(rng, h_p[0], pbatch(0), train)["params"])
    stats = self.variable("batch_stats", "patch_net", lambda: net.init(
        jax.random.PRNGKey(0), h_p[0], pbatch(0), train).get("batch_stats", {}))

    def one(hp, xp):
      (loss, metrics), new_stats = apply_with_stats(net, params, stats.value, hp,
                                                    {**batch, **xp}, train)
      return loss, metrics, new_stats

    if self.loop == "unrolled":
      try:
        outs = [one(h_p[p], {k: x_p[k][p] for k in keys}) for p in range(len(h_p))]
      except flax.errors.ScopeParamShapeError as e:
        sizes = sorted({hp.shape[1:3] for hp in h_p})
        raise ValueError(
            f"PFF: the head {type(net).__name__} has parameters whose shape depends on its "
            f"input size, so it cannot be shared by the unequal patches {sizes} that the grid "
            f"{tuple(self.grid)} cuts from a {h.shape[1]}x{h.shape[2]} map; use a pff.grid that "
            "divides every module's map, or pff.mode='off'") from e
      losses_, metrics, new_stats = jax.tree.map(lambda *v: jnp.stack(v), *outs)
    else:
      if not (even(h, self.grid) and all(even(batch[k], self.grid) for k in keys)):
        raise ValueError(
            f"pff.patch_loop={self.loop!r} needs equal patches, but the grid {tuple(self.grid)} "
            f"does not divide the feature map {h.shape[1:3]} or the image; use "
            "pff.patch_loop='unrolled' or a grid that divides both")
      hs = jnp.stack(h_p)
      xs = {k: jnp.stack(x_p[k]) for k in keys}
      if self.loop == "vmap":
        losses_, metrics, new_stats = jax.vmap(one)(hs, xs)
      else:
        body = jax.checkpoint(lambda carry, hx: (carry, one(*hx)))
        _, (losses_, metrics, new_stats) = jax.lax.scan(body, None, (hs, xs))
    if train and not self.is_initializing() and self.is_mutable_collection("batch_stats"):
      stats.value = jax.tree.map(lambda s: jnp.mean(s, axis=0), new_stats)
    metrics = jax.tree.map(lambda m: jnp.mean(m, axis=0), metrics)
    loss = jnp.mean(losses_)
    metrics["loss"] = loss
    return loss, metrics


class SumHead(nn.Module):
  """Sum of several heads on the same h: loss = Σ loss_i; metrics "<names[i]>_<key>" + "loss"
  (+ "accuracy" from the first part that reports one)."""
  parts: tuple[nn.Module, ...]
  names: tuple[str, ...]

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    total = jnp.zeros((), jnp.float32)
    metrics = {}
    for part, name in zip(self.parts, self.names):
      loss, m = part(h, batch, train)
      total = total + loss
      metrics.update({f"{name}_{k}": v for k, v in m.items()})
      if "accuracy" in m:
        metrics.setdefault("accuracy", m["accuracy"])
    metrics["loss"] = total
    return total, metrics
