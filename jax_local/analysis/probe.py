"""Linear probe: how linearly separable a frozen module's pooled output is.

Classifier: multinomial logistic (softmax) regression on the features standardised with the
training features' per-dimension mean and standard deviation,
    min_{W, b}  mean_i CE(softmax(W^T z_i + b), y_i) + (l2 / 2) ||W||_F^2,
fitted full-batch by L-BFGS (optax.lbfgs, zoom line search) from zero for `steps` iterations.
Defaults: l2 = 1e-4, steps = 200. The problem is convex, so the result depends on the features
only (not on an initialisation or a learning rate); at these settings the training loss has
stopped moving on the Fashion-MNIST features (see tests/test_analysis.py).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

L2 = 1e-4
STEPS = 200


@dataclasses.dataclass
class ProbeResult:
  train_accuracy: float
  test_accuracy: float
  train_loss: float     # final regularised objective
  dim: int


def _fit(z, y, num_classes: int, l2: float, steps: int):
  def objective(params):
    logits = z @ params["w"] + params["b"]
    ce = -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))
    return ce + 0.5 * l2 * jnp.sum(params["w"] ** 2)

  opt = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)
  params = {"w": jnp.zeros((z.shape[1], num_classes), jnp.float32),
            "b": jnp.zeros((num_classes,), jnp.float32)}

  def body(carry, _):
    p, state = carry
    value, grad = value_and_grad(p, state=state)
    updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=objective)
    return (optax.apply_updates(p, updates), state), value

  (params, _), values = jax.lax.scan(body, (params, opt.init(params)), None, length=steps)
  return params, objective(params), values


_fit_jit = jax.jit(_fit, static_argnums=(2, 3, 4))


def fit_probe(train_x, train_y, test_x, test_y, num_classes: int, l2: float = L2,
              steps: int = STEPS, return_curve: bool = False, pad_to: int = 0):
  """Fits the probe on (train_x [N, D], train_y [N]) and scores it on the test features.

  pad_to: append zero feature columns up to this width before fitting. A zero column gets zero
  weight (its gradient is l2 * w, from w = 0), so the fit is unchanged, and modules of different
  widths share one compiled fit. Returns a ProbeResult (and the objective per iteration if
  return_curve).
  """
  train_x = np.asarray(train_x, np.float32).reshape(len(train_x), -1)
  test_x = np.asarray(test_x, np.float32).reshape(len(test_x), -1)
  dim = train_x.shape[1]
  mean = train_x.mean(0)
  std = np.maximum(train_x.std(0), 1e-6)
  z, zt = (train_x - mean) / std, (test_x - mean) / std
  if pad_to > dim:
    z = np.pad(z, ((0, 0), (0, pad_to - dim)))
  y = jnp.asarray(train_y, jnp.int32)
  params, loss, curve = _fit_jit(jnp.asarray(z), y, int(num_classes), float(l2), int(steps))
  params = jax.device_get(params)
  params = {"w": params["w"][:dim], "b": params["b"]}
  z = z[:, :dim]
  acc = lambda a, t: float(np.mean(np.argmax(a @ params["w"] + params["b"], -1) == np.asarray(t)))
  result = ProbeResult(acc(z, train_y), acc(zt, test_y), float(loss), dim)
  return (result, np.asarray(curve)) if return_curve else result
