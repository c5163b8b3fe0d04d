"""Bilinear resize with PyTorch's align_corners=True semantics (docs/methods.md §1.4).

`jax.image.resize` uses half-pixel centres and therefore differs; this module builds the
exact align-corners interpolation as two dense matrices and applies them with einsum.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def interp_matrix(n_in: int, n_out: int) -> np.ndarray:
  """Dense [n_out, n_in] align-corners interpolation matrix (docs/methods.md §1.4).

  Output pixel o reads src = o*(n_in-1)/(n_out-1) (src = 0 if n_out == 1) and mixes
  floor(src) and floor(src)+1 (clamped to the border) with weights (1-frac, frac).
  """
  if n_out == 1:
    src = np.zeros((1,), np.float64)
  else:
    src = np.arange(n_out, dtype=np.float64) * ((n_in - 1) / (n_out - 1))
  i0 = np.clip(np.floor(src).astype(np.int64), 0, n_in - 1)
  i1 = np.minimum(i0 + 1, n_in - 1)
  frac = src - i0
  m = np.zeros((n_out, n_in), np.float64)
  rows = np.arange(n_out)
  np.add.at(m, (rows, i0), 1.0 - frac)
  np.add.at(m, (rows, i1), frac)
  return m.astype(np.float32)


def resize_align_corners(x, out_hw: int | Sequence[int]):
  """Bilinear resize of NHWC `x` [N,H,W,C] -> [N,H_out,W_out,C], align_corners=True.

  Equation (docs/methods.md §1.4): y = M_h · x · M_wᵀ per sample and channel, i.e.
  einsum("oh,nhwc->nowc") then einsum("pw,nhwc->nhpc"). Identity when sizes are equal;
  also valid for downsampling. Exact and differentiable.
  """
  if isinstance(out_hw, int):
    out_hw = (out_hw, out_hw)
  _, h, w, _ = x.shape
  oh, ow = int(out_hw[0]), int(out_hw[1])
  hi = jax.lax.Precision.HIGHEST  # keep float32 exactness on TF32/bf16 matmul units
  if oh != h:
    x = jnp.einsum("oh,nhwc->nowc", jnp.asarray(interp_matrix(h, oh), x.dtype), x, precision=hi)
  if ow != w:
    x = jnp.einsum("pw,nhwc->nhpc", jnp.asarray(interp_matrix(w, ow), x.dtype), x, precision=hi)
  return x
