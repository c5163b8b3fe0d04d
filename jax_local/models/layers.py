"""Layers with the reference code's initialisation (methods.md §1.3).

- Conv weights: untruncated He-normal with fan_out, N(0, 2 / (k_h * k_w * C_out)).
- Linear layers: PyTorch default, weight and bias U(+-1/sqrt(fan_in)).
- Decoder conv biases: PyTorch default U(+-1/sqrt(fan_in)), fan_in = C_in * k_h * k_w.
- BatchNorm: PyTorch momentum 0.1 == Flax momentum 0.9, eps 1e-5, gamma=1, beta=0.

All layers work on NHWC tensors.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

he_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
torch_linear_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


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
        feature_group_count=self.feature_group_count,
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
                    bias_init=torch_uniform_bias(x.shape[-1]))(x)


BatchNorm = functools.partial(nn.BatchNorm, momentum=0.9, epsilon=1e-5)
"""BatchNorm with the reference statistics; call as BatchNorm(use_running_average=not train)."""


def global_avg_pool(x):
  """[N, H, W, C] -> [N, C]."""
  return jnp.mean(x, axis=(1, 2))


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
