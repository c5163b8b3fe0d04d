"""Optimizers and learning-rate schedules, per epoch (the papers') or per step (docs/methods.md §1.7,
§10.3-§10.7; README "Train").

`optim.schedule_unit` picks the unit:
  epoch  the references' rule: the LR is a function of the epoch only and is constant within an
         epoch (§1.7, §10.3); the formulas below. The default of every paper config.
  step   the same shapes evaluated at every step t of T = num_epochs * steps_per_epoch, so a
         short run anneals smoothly (the formulas after the per-epoch ones).
`make_schedule` turns either into an optax schedule `step -> lr`; `make_optimizer`
uses that same schedule, so the trainer logs a step's LR as `schedule(n)` at the 0-based count n
of its update (`train.step_learning_rate`; no `inject_hyperparams`: the optimizer state stays
minimal and the logged value is exactly the one applied, because optax's `scale_by_schedule`
also evaluates the schedule at the 0-based update count).

Schedules (`optim.schedule`), with the 0-based `epoch` of the trainer and E = num_epochs:
  warmup_cosine  §10.3, the InfoPro-family CIFAR rule with e = epoch+1 and W = warmup_epochs:
                 c(e) = 0.5*lr0*(1 + cos(pi*e/E));
                 lr = c(e)*(e-1)/W + 0.01*(W+1-e)/W if e <= W, else c(e). The last epoch has LR 0.
  cosine         §10.3 ImageNet: 0.5*lr0*(1 + cos(pi*epoch/E)), 0-based, no warm-up.
  step           the InfoPro code without --cos_lr (§10.3): lr0 * 0.1^#{m in step_epochs: m <= e},
                 i.e. the reference multiplies by 0.1 when adjust_learning_rate is called with
                 e = epoch+1 == m, so the decay applies from 0-based epoch m-1 on.
  milestones     PredSim §10.6 (`LL train.py`: lr0*fact**bisect_right(ms, epoch_1based-1)):
                 lr0 * milestone_factor^#{m in milestones: m <= epoch}, 0-based epoch, so the
                 decay applies from 0-based epoch m on (one epoch later than `step`).
  constant       lr0.

Per step (`schedule_unit="step"`), with the 0-based step t, S = steps_per_epoch, T = E*S and
W = warmup_epochs*S:
  warmup_cosine  lr = s0 + (lr0 - s0)*t/W for t < W (s0 = warmup_start_lr), then
                 0.5*lr0*(1 + cos(pi*(t-W)/(T-W))), reaching 0 at t = T (optax
                 warmup_cosine_decay_schedule).
  cosine         0.5*lr0*(1 + cos(pi*t/T)), 0 at t = T (optax cosine_decay_schedule).
  step           lr0 * step_factor^#{m in step_epochs: t >= m*S} (decay after m whole epochs).
  milestones     lr0 * milestone_factor^#{m in milestones: t >= m*S}.
  constant       lr0.
"""
from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("warmup_cosine", "cosine", "step", "milestones", "constant")
SCHEDULE_UNITS = ("epoch", "step")
_DEFAULTS = {"schedule_unit": "epoch", "momentum": 0.9, "nesterov": True, "weight_decay": 0.0, "warmup_epochs": 10,
             "warmup_start_lr": 0.01, "step_epochs": (80, 120), "step_factor": 0.1,
             "milestones": (200, 300, 350, 375), "milestone_factor": 0.25}


def _get(cfg: Any, key: str):
  """Field of a ConfigDict / dict / object; optional fields fall back to `_DEFAULTS`."""
  if isinstance(cfg, dict):
    value = cfg.get(key, _DEFAULTS.get(key))
  else:
    value = getattr(cfg, key, _DEFAULTS.get(key))
  if value is None and key not in _DEFAULTS:
    raise ValueError(f"optim.{key} is required")
  return value


def validate_optim(optim_config) -> None:
  """Raises ValueError naming the `optim.*` field and the allowed values (§1.7, §10)."""
  name, schedule = _get(optim_config, "name"), _get(optim_config, "schedule")
  if name not in OPTIMIZERS:
    raise ValueError(f"optim.name={name!r} is unknown; allowed: {', '.join(OPTIMIZERS)}")
  if schedule not in SCHEDULES:
    raise ValueError(f"optim.schedule={schedule!r} is unknown; allowed: {', '.join(SCHEDULES)}")
  unit = _get(optim_config, "schedule_unit")
  if unit not in SCHEDULE_UNITS:
    raise ValueError(f"optim.schedule_unit={unit!r} is unknown; allowed: "
                     f"{', '.join(SCHEDULE_UNITS)}")
  lr = _get(optim_config, "lr")
  if not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
    raise ValueError(f"optim.lr={lr!r} must be a finite number > 0")
  wd = _get(optim_config, "weight_decay")
  if not isinstance(wd, (int, float)) or not math.isfinite(wd) or wd < 0:
    raise ValueError(f"optim.weight_decay={wd!r} must be a finite number >= 0")
  mom = _get(optim_config, "momentum")
  if not isinstance(mom, (int, float)) or not 0 <= mom < 1:
    raise ValueError(f"optim.momentum={mom!r} must be in [0, 1)")
  if name == "sgd" and _get(optim_config, "nesterov") and mom == 0:
    raise ValueError("optim.nesterov=True requires optim.momentum > 0 (as torch.optim.SGD)")
  w = _get(optim_config, "warmup_epochs")
  if schedule == "warmup_cosine" and (not isinstance(w, int) or w < 0):
    raise ValueError(f"optim.warmup_epochs={w!r} must be an integer >= 0")
  for key, fkey in (("step_epochs", "step_factor"), ("milestones", "milestone_factor")):
    if schedule == ("step" if key == "step_epochs" else "milestones"):
      ms, f = tuple(_get(optim_config, key)), _get(optim_config, fkey)
      if any(not isinstance(m, int) or m < 0 for m in ms):
        raise ValueError(f"optim.{key}={ms!r} must be non-negative integer epochs")
      if not isinstance(f, (int, float)) or f <= 0:
        raise ValueError(f"optim.{fkey}={f!r} must be > 0")


def lr_for_epoch(optim_config, epoch: int, num_epochs: int) -> float:
  """LR of 0-based `epoch` of `num_epochs` (the reference's e = epoch+1); see the module doc."""
  schedule, lr0 = _get(optim_config, "schedule"), float(_get(optim_config, "lr"))
  E, e = num_epochs, epoch + 1
  if schedule == "warmup_cosine":  # §10.3
    w, start = _get(optim_config, "warmup_epochs"), float(_get(optim_config, "warmup_start_lr"))
    c = 0.5 * lr0 * (1 + math.cos(math.pi * e / E))
    return c * (e - 1) / w + start * (w + 1 - e) / w if e <= w else c
  if schedule == "cosine":  # §10.3, ImageNet
    return 0.5 * lr0 * (1 + math.cos(math.pi * epoch / E))
  if schedule == "step":  # InfoPro without --cos_lr
    n = sum(m <= e for m in _get(optim_config, "step_epochs"))
    return lr0 * float(_get(optim_config, "step_factor")) ** n
  if schedule == "milestones":  # §10.6
    n = sum(m <= epoch for m in _get(optim_config, "milestones"))
    return lr0 * float(_get(optim_config, "milestone_factor")) ** n
  if schedule == "constant":
    return lr0
  raise ValueError(f"optim.schedule={schedule!r} is unknown; allowed: {', '.join(SCHEDULES)}")


def lr_table(optim_config, num_epochs: int) -> np.ndarray:
  """Per-epoch LRs, float32 array of length num_epochs."""
  return np.asarray([lr_for_epoch(optim_config, ep, num_epochs) for ep in range(num_epochs)],
                    np.float32)


def make_schedule(optim_config, num_epochs: int, steps_per_epoch: int) -> optax.Schedule:
  """optax schedule `step -> lr` in the config's `schedule_unit`; jit-traceable.

  epoch: constant within an epoch (§1.7); epoch = step // steps_per_epoch, clipped to
  [0, num_epochs-1] (steps past the end keep the last epoch's LR). step: see the module doc.
  """
  if num_epochs < 1 or steps_per_epoch < 1:
    raise ValueError(f"num_epochs={num_epochs} and steps_per_epoch={steps_per_epoch} must be >= 1")
  if _get(optim_config, "schedule_unit") == "step":
    return _per_step_schedule(optim_config, num_epochs, steps_per_epoch)
  table = jnp.asarray(lr_table(optim_config, num_epochs))

  def schedule(step):
    ep = jnp.clip(jnp.asarray(step) // steps_per_epoch, 0, num_epochs - 1)
    return table[ep]

  return schedule


def _per_step_schedule(optim_config, num_epochs: int, steps_per_epoch: int) -> optax.Schedule:
  """The per-step forms of the module doc, built from optax's schedules."""
  name, lr0 = _get(optim_config, "schedule"), float(_get(optim_config, "lr"))
  total = num_epochs * steps_per_epoch
  if name == "warmup_cosine":
    warmup = min(_get(optim_config, "warmup_epochs") * steps_per_epoch, total - 1)
    return optax.warmup_cosine_decay_schedule(
        float(_get(optim_config, "warmup_start_lr")), lr0, warmup, total, end_value=0.0)
  if name == "cosine":
    return optax.cosine_decay_schedule(lr0, total)
  if name in ("step", "milestones"):
    epochs = _get(optim_config, "step_epochs" if name == "step" else "milestones")
    factor = float(_get(optim_config, "step_factor" if name == "step" else "milestone_factor"))
    boundaries = {}
    for m in epochs:  # a repeated epoch multiplies twice, as in the per-epoch count
      boundaries[m * steps_per_epoch] = boundaries.get(m * steps_per_epoch, 1.0) * factor
    return optax.piecewise_constant_schedule(lr0, boundaries)
  return optax.constant_schedule(lr0)


def make_optimizer(optim_config, num_epochs: int, steps_per_epoch: int) -> optax.GradientTransformation:
  """The reference optimizer with the config's schedule (§1.7, §10.6).

  sgd:  chain(add_decayed_weights(wd), sgd(schedule, momentum, nesterov)) = torch.optim.SGD with
        coupled L2 on every parameter (decay added to the gradient before momentum; Nesterov
        update g + mu*buf).
  adam: adam(schedule) with default betas/eps (PredSim, wd 0); coupled L2 in front if wd > 0,
        as torch.optim.Adam(weight_decay=wd).
  The current LR for logging is `make_schedule(...)(n)` at update count n (see the module doc).
  """
  validate_optim(optim_config)
  schedule = make_schedule(optim_config, num_epochs, steps_per_epoch)
  wd = float(_get(optim_config, "weight_decay"))
  if _get(optim_config, "name") == "sgd":
    mom = float(_get(optim_config, "momentum"))
    tx = optax.sgd(schedule, momentum=mom or None, nesterov=bool(_get(optim_config, "nesterov")))
  else:
    tx = optax.adam(schedule)
  return optax.chain(optax.add_decayed_weights(wd), tx) if wd > 0 else tx
