"""Layers with the reference code's initialisation (docs/methods.md §1.3).

- Conv weights: untruncated He-normal with fan_out, N(0, 2 / (k_h * k_w * C_out)).
- Linear layers: PyTorch default, weight and bias U(+-1/sqrt(fan_in)).
- Decoder conv biases: PyTorch default U(+-1/sqrt(fan_in)), fan_in = C_in * k_h * k_w.
- BatchNorm: PyTorch momentum 0.1 == Flax momentum 0.9, eps 1e-5, gamma=1, beta=0.
- Bilinear resize with PyTorch's align_corners=True (`resize_align_corners`, docs/methods.md
  §1.4): `jax.image.resize` uses half-pixel centres and therefore differs, so the exact
  align-corners interpolation is built as two dense matrices and applied with einsum.

All layers work on NHWC tensors.

Compute policy (`Policy`, entered with `with policy(...)`): the compute dtype of Conv, Dense and
BatchNorm (parameters are always created and kept in float32; bfloat16 compute casts them inside
the layer, so gradients arrive in float32) and the number of BatchNorm statistics groups. The
policy is read when a layer is traced, so a jitted function must be traced (first called) under
the policy it is meant for; `jax_local.parallel` enters it around every step, init and eval.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

he_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
torch_linear_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


@dataclasses.dataclass(frozen=True)
class Policy:
  """compute_dtype: dtype of convolutions, matmuls and BN outputs (None: float32, the default).
  bn_groups: BatchNorm in train mode splits the batch into this many equal contiguous groups and
  normalises each with its own statistics (ghost BN; 1 = statistics over the whole batch). With
  the batch sharded over G devices along its first axis, G groups are the per-device statistics
  of the PyTorch references (one process per GPU), computed without cross-device traffic.
  """
  compute_dtype: Any = None
  bn_groups: int = 1


_POLICY = contextvars.ContextVar("jax_local_layer_policy", default=Policy())


def current_policy() -> Policy:
  return _POLICY.get()


@contextlib.contextmanager
def policy(p: Policy):
  """Layers traced inside this context use `p`."""
  token = _POLICY.set(p)
  try:
    yield p
  finally:
    _POLICY.reset(token)


def torch_uniform_bias(fan_in: int):
  """Initializer U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default bias init."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class Conv(nn.Module):
  """2-D convolution with He fan-out init; bias (if any) with PyTorch's default init."""
  features: int
  kernel_size: int = 3
  stride: int = 1
  use_bias: bool = False
  feature_group_count: int = 1
  padding: int | None = None  # None: k // 2, the reference "same" padding for odd k

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    pad = k // 2 if self.padding is None else self.padding
    fan_in = x.shape[-1] // self.feature_group_count * k * k
    return nn.Conv(
        self.features, (k, k), strides=(self.stride, self.stride),
        padding=((pad, pad), (pad, pad)), use_bias=self.use_bias,
        feature_group_count=self.feature_group_count, dtype=current_policy().compute_dtype,
        kernel_init=he_fan_out, bias_init=torch_uniform_bias(fan_in))(x)


class Dense(nn.Module):
  """Linear layer with PyTorch's default init for weight and bias (or a zero weight)."""
  features: int
  use_bias: bool = True
  zero_kernel: bool = False

  @nn.compact
  def __call__(self, x):
    kernel_init = nn.initializers.zeros if self.zero_kernel else torch_linear_kernel
    return nn.Dense(self.features, use_bias=self.use_bias, kernel_init=kernel_init,
                    dtype=current_policy().compute_dtype,
                    bias_init=torch_uniform_bias(x.shape[-1]))(x)


class BatchNorm(nn.Module):
  """BatchNorm over the last axis with the reference statistics (momentum 0.9, eps 1e-5).

  Call as BatchNorm(use_running_average=not train). Variables as `flax.linen.BatchNorm` (params
  "scale", "bias"; batch_stats "mean", "var", float32), so checkpoints are interchangeable, and
  with one group the same arithmetic: statistics in float32, var = E[x²] − E[x]² clipped at 0,
  biased variance in the running average (Flax's rule).

  With G = `groups` (None: the policy's `bn_groups`) > 1 in train mode, x [N, ...] is viewed as
  [G, N/G, ...] and each group is normalised with its own mean and variance; the running
  statistics move toward the mean over groups of the group means and variances (what averaging
  G per-device BatchNorms' updates would give). Initialisation always uses one group.
  """
  use_running_average: bool | None = None
  momentum: float = 0.9
  epsilon: float = 1e-5
  use_bias: bool = True
  use_scale: bool = True
  scale_init: Callable = nn.initializers.ones
  bias_init: Callable = nn.initializers.zeros
  groups: int | None = None

  @nn.compact
  def __call__(self, x, use_running_average: bool | None = None):
    use_running_average = nn.merge_param("use_running_average", self.use_running_average,
                                         use_running_average)
    pol = current_policy()
    c = x.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (c,))
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (c,))
    shape = x.shape
    if use_running_average:
      mean, var = ra_mean.value, ra_var.value
      axes = tuple(range(x.ndim - 1))
    else:
      groups = 1 if self.is_initializing() else (self.groups or pol.bn_groups)
      if groups > 1:
        if shape[0] % groups:
          raise ValueError(f"BatchNorm with {groups} statistics groups (per-device BN) needs a "
                           f"batch divisible by {groups}; got {shape[0]}")
        x = x.reshape(groups, shape[0] // groups, *shape[1:])
      axes = tuple(range(1 if groups > 1 else 0, x.ndim - 1))
      x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
      mean = x32.mean(axes)
      var = jnp.maximum(0.0, jax.lax.square(x32).mean(axes) - jax.lax.square(mean))
      if not self.is_initializing():
        batch_mean = mean.mean(0) if groups > 1 else mean
        batch_var = var.mean(0) if groups > 1 else var
        ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * batch_mean
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * batch_var
    mean = jnp.expand_dims(mean, axes)
    var = jnp.expand_dims(var, axes)
    y = x - mean
    mul = jax.lax.rsqrt(var + self.epsilon)
    out_dtype = jnp.result_type(x, jnp.float32)
    if self.use_scale:
      mul = mul * self.param("scale", self.scale_init, (c,), jnp.float32)
    y = y * mul
    if self.use_bias:
      y = y + self.param("bias", self.bias_init, (c,), jnp.float32)
    y = y.reshape(shape)
    return y.astype(pol.compute_dtype or out_dtype)


def global_avg_pool(x):
  """[N, H, W, C] -> [N, C]."""
  return jnp.mean(x, axis=(1, 2))


class Classifier(nn.Module):
  """GAP then Linear(C -> num_classes), PyTorch default init: [N,H,W,C] -> logits [N, classes].

  The classifier block "fc" of the CIFAR and ImageNet ResNets (docs/methods.md §2.1, §2.2).
  """
  num_classes: int

  @nn.compact
  def __call__(self, x, train: bool):
    del train
    return Dense(self.num_classes)(global_avg_pool(x))


def adaptive_avg_pool(x, out_size: int | Sequence[int]):
  """PyTorch AdaptiveAvgPool2d on NHWC: output cell i averages rows floor(i*H/o) .. ceil((i+1)*H/o)-1."""
  if isinstance(out_size, int):
    out_size = (out_size, out_size)
  n, h, w, c = x.shape
  oh, ow = out_size
  if (h, w) == (oh, ow):
    return x
  if h % oh == 0 and w % ow == 0:  # equal cells: one reshape (the loop below compiles slowly)
    return jnp.mean(x.reshape(n, oh, h // oh, ow, w // ow, c), axis=(2, 4))
  rows = []
  for i in range(oh):
    r0, r1 = (i * h) // oh, -(-((i + 1) * h) // oh)
    cols = []
    for j in range(ow):
      c0, c1 = (j * w) // ow, -(-((j + 1) * w) // ow)
      cols.append(jnp.mean(x[:, r0:r1, c0:c1, :], axis=(1, 2)))
    rows.append(jnp.stack(cols, axis=1))
  return jnp.stack(rows, axis=1)


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
