"""LR schedules (docs/methods.md §10.3, §10.6) and the optimizer against hand-written PyTorch rules (§1.7)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from jax_local import optim


def _cfg(**kw):
  c = common.get_config().optim
  for k, v in kw.items():
    c[k] = v
  return c


def _lr(cfg, e, E):  # e is the reference's 1-based epoch
  return optim.lr_for_epoch(cfg, e - 1, E)


@pytest.mark.parametrize("lr0,E,e,want", [
    (0.8, 160, 1, 0.01), (0.8, 160, 2, 0.089), (0.8, 160, 5, 0.325), (0.8, 160, 10, 0.714),
    (0.8, 160, 11, 0.791), (0.8, 160, 80, 0.400), (0.8, 160, 160, 0.0),
    (0.8, 400, 10, 0.720), (0.8, 400, 11, 0.799), (0.8, 400, 200, 0.400), (0.8, 400, 400, 0.0),
    (0.1, 160, 1, 0.01), (0.1, 160, 10, 0.090)])
def test_warmup_cosine_values(lr0, E, e, want):
  assert abs(_lr(_cfg(lr=lr0), e, E) - want) < 1e-3


def test_other_schedules():
  cos = _cfg(schedule="cosine", lr=0.4)
  assert optim.lr_for_epoch(cos, 0, 90) == pytest.approx(0.4)
  assert optim.lr_for_epoch(cos, 45, 90) == pytest.approx(0.2)
  step = _cfg(schedule="step", lr=0.1, step_epochs=(80, 120))
  # reference: adjust_learning_rate(e = epoch+1) multiplies by 0.1 when e in (80, 120)
  assert [optim.lr_for_epoch(step, ep, 160) for ep in (0, 78, 79, 118, 119)] == pytest.approx(
      [0.1, 0.1, 0.01, 0.01, 0.001])
  ms = _cfg(name="adam", schedule="milestones", lr=5e-4, weight_decay=0.0,
            milestones=(200, 300, 350, 375), milestone_factor=0.25)
  # LL: lr0 * 0.25 ** bisect_right(ms, epoch_1based - 1)
  got = [optim.lr_for_epoch(ms, ep, 400) for ep in (0, 199, 200, 299, 300, 375, 399)]
  assert got == pytest.approx([5e-4, 5e-4, 1.25e-4, 1.25e-4, 3.125e-5, 5e-4 * 0.25 ** 4,
                               5e-4 * 0.25 ** 4])
  assert optim.lr_for_epoch(_cfg(schedule="constant", lr=0.3), 7, 10) == pytest.approx(0.3)


def test_schedule_constant_within_epoch():
  cfg, E, spe = _cfg(lr=0.8), 12, 5
  sched = jax.jit(optim.make_schedule(cfg, E, spe))
  for ep in range(E):
    vals = [float(sched(jnp.int32(ep * spe + i))) for i in range(spe)]
    assert vals == pytest.approx([optim.lr_for_epoch(cfg, ep, E)] * spe, rel=1e-6)
  assert float(sched(jnp.int32(E * spe + 3))) == pytest.approx(optim.lr_for_epoch(cfg, E - 1, E), abs=1e-7)


def _per_step_closed_form(cfg, t, E, S):
  """The module doc's per-step formulas, written out in plain Python."""
  T, lr0 = E * S, cfg.lr
  if cfg.schedule == "warmup_cosine":
    W, s0 = cfg.warmup_epochs * S, 0.01
    return s0 + (lr0 - s0) * t / W if t < W else 0.5 * lr0 * (1 + math.cos(math.pi * (t - W) / (T - W)))
  if cfg.schedule == "cosine":
    return 0.5 * lr0 * (1 + math.cos(math.pi * min(t, T) / T))
  if cfg.schedule == "step":
    return lr0 * 0.1 ** sum(t >= m * S for m in cfg.step_epochs)
  if cfg.schedule == "milestones":
    return lr0 * cfg.milestone_factor ** sum(t >= m * S for m in cfg.milestones)
  return lr0


@pytest.mark.parametrize("schedule", ["warmup_cosine", "cosine", "step", "milestones", "constant"])
def test_per_step_schedule_closed_form(schedule):
  E, S = 6, 7
  cfg = _cfg(lr=0.4, schedule=schedule, schedule_unit="step", warmup_epochs=2,
             step_epochs=(2, 4), milestones=(1, 3, 5), milestone_factor=0.25)
  sched = jax.jit(optim.make_schedule(cfg, E, S))
  for t in (0, 1, 6, 7, 13, 14, 15, 20, 21, 28, 35, 41, 42):
    assert float(sched(jnp.int32(t))) == pytest.approx(_per_step_closed_form(cfg, t, E, S),
                                                        rel=1e-5, abs=1e-7), t
  if schedule in ("warmup_cosine", "cosine"):  # anneals within an epoch and ends at 0
    assert float(sched(jnp.int32(E * S - 3))) < float(sched(jnp.int32(E * S - 4)))
    assert float(sched(jnp.int32(E * S))) == pytest.approx(0.0, abs=1e-7)


def test_schedule_unit_is_validated():
  with pytest.raises(ValueError, match=r"optim\.schedule_unit='batch'.*epoch, step"):
    optim.validate_optim(_cfg(schedule_unit="batch"))


def _grad(p):  # gradient of 0.5*sum(a*p^2) + b.p
  return np.array([1.0, 2.0, 0.5, 3.0]) * p + np.array([0.1, -0.2, 0.3, 0.0])


def test_sgd_matches_torch_rule():
  cfg, E, spe = _cfg(lr=0.8, weight_decay=1e-4), 5, 2  # steps 0,1 epoch 0; step 2 epoch 1
  tx = optim.make_optimizer(cfg, E, spe)
  p0 = np.array([1.0, -2.0, 0.5, 3.0])
  params, state = jnp.asarray(p0, jnp.float32), None
  state = tx.init(params)
  # torch.optim.SGD(nesterov=True, momentum=mu, weight_decay=wd), dampening 0
  p, buf, mu, wd = p0.copy(), None, 0.9, 1e-4
  for t in range(3):
    lr = optim.lr_for_epoch(cfg, t // spe, E)
    d = _grad(p) + wd * p
    buf = d if buf is None else mu * buf + d
    p = p - lr * (d + mu * buf)
    upd, state = tx.update(jnp.asarray(_grad(np.asarray(params, np.float64)), jnp.float32), state, params)
    params = params + upd
    np.testing.assert_allclose(np.asarray(params), p, rtol=1e-5, atol=1e-6)


def test_adam_matches_torch_rule():
  cfg = _cfg(name="adam", schedule="constant", lr=1e-2, weight_decay=0.0)
  tx = optim.make_optimizer(cfg, 3, 1)
  p0 = np.array([1.0, -2.0, 0.5, 3.0])
  params = jnp.asarray(p0, jnp.float32)
  state = tx.init(params)
  p, m, v, b1, b2, eps = p0.copy(), 0 * p0, 0 * p0, 0.9, 0.999, 1e-8
  for t in range(1, 4):
    g = _grad(p)
    m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
    p = p - 1e-2 * (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
    upd, state = tx.update(jnp.asarray(_grad(np.asarray(params, np.float64)), jnp.float32), state, params)
    params = params + upd
    np.testing.assert_allclose(np.asarray(params), p, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("field,value,match", [
    ("name", "rmsprop", r"optim\.name='rmsprop'.*sgd, adam"),
    ("schedule", "poly", r"optim\.schedule='poly'.*warmup_cosine"),
    ("lr", 0.0, r"optim\.lr=0\.0"),
    ("lr", -0.1, r"optim\.lr"),
    ("weight_decay", -1e-4, r"optim\.weight_decay"),
    ("momentum", 1.0, r"optim\.momentum=1\.0.*\[0, 1\)"),
    ("momentum", -0.1, r"optim\.momentum"),
])
def test_validation_errors(field, value, match):
  cfg = _cfg(**{field: value})
  with pytest.raises(ValueError, match=match):
    optim.validate_optim(cfg)
  with pytest.raises(ValueError, match=match):
    optim.make_optimizer(cfg, 10, 1)


def test_defaults_validate():
  optim.validate_optim(common.get_config().optim)
  optim.validate_optim(_cfg(name="adam", lr=5e-4, weight_decay=0.0, schedule="milestones"))
