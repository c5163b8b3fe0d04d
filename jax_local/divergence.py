"""Divergence guard: each step is checked on device; the host reads the flags when it logs.

`Guard(mode).step(train_step, state, batch)` runs an executor's step unchanged and adds
`metrics["finite"]`, computed in jit: the loss, the gradient norm and every floating leaf of the
new state are finite. The flag travels with the other metrics, so checking costs no host sync;
the trainer reads it at log steps and before every checkpoint (`Guard.review`).

`on_nonfinite="stop"` (default): `review` raises `Diverged` naming the first bad step, the terms
whose loss is non-finite, the gradient norm and the LR. Nothing is checkpointed after a bad step,
so the newest checkpoint is the last good one.

`on_nonfinite="skip"`: a bad step is undone on device. Floating leaves (parameters, BN statistics,
optimizer moments) keep their values from before the step; integer leaves (the step and the
optimizer's count, hence the data position and the LR schedule) advance, so a skipped step is a
step with a zero update. Executors donate their input state, so undoing needs a copy taken before
the step: one extra state-sized buffer and one device copy per step, which is why skip is opt-in.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

EXIT_DIVERGED = 3
MODES = ("stop", "skip")


class Diverged(FloatingPointError):
  """A non-finite loss, gradient or state at `step` stopped training."""

  def __init__(self, message: str, step: int):
    super().__init__(message)
    self.step = step


def _all_finite(state, metrics):
  ok = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
  for x in jax.tree.leaves(state):
    if jnp.issubdtype(x.dtype, jnp.floating):
      ok = ok & jnp.all(jnp.isfinite(x))
  return ok


def _undo_if_bad(new, old, metrics):
  ok = _all_finite(new, metrics)
  keep = lambda n, o: jnp.where(ok, n, o) if jnp.issubdtype(n.dtype, jnp.floating) else n
  return jax.tree.map(keep, new, old), ok


def diagnose(step: int, row: dict) -> str:
  """What was non-finite at `step`, from that step's host metrics."""
  terms = sorted(k[:-5] for k, v in row.items() if k.endswith("/loss") and not np.isfinite(v))
  if terms:
    what = "loss of term " + ", ".join(f"{t} = {row[t + '/loss']}" for t in terms)
  elif not np.isfinite(row["loss"]):
    what = f"total loss = {row['loss']}"
  elif not np.isfinite(row["grad_norm"]):
    what = "gradient norm (every term's loss finite)"
  else:
    what = "updated state (loss and gradient norm finite: the update overflowed)"
  return (f"non-finite {what} at step {step}; lr {row['lr']:.4g}, "
          f"grad_norm {row['grad_norm']:.4g}")


class Guard:
  """Runs train steps with the check of the module doc, in `mode` ("stop" or "skip")."""

  def __init__(self, mode: str):
    if mode not in MODES:
      raise ValueError(f"on_nonfinite={mode!r}; valid: {', '.join(MODES)}")
    self.mode = mode
    self._check = jax.jit(_all_finite)
    self._copy = jax.jit(lambda s: jax.tree.map(jnp.copy, s))
    self._undo = jax.jit(_undo_if_bad, donate_argnums=0)

  def step(self, train_step, state, batch):
    """`train_step(state, batch)` plus metrics["finite"] (a device bool)."""
    if self.mode == "skip":
      before = self._copy(state)
      new, metrics = train_step(state, batch)
      state, ok = self._undo(new, before, metrics)
    else:
      state, metrics = train_step(state, batch)
      ok = self._check(state, metrics)
    return state, {**metrics, "finite": ok}

  def review(self, pending, last_checkpoint) -> list[dict]:
    """pending: [(step, device metrics)] since the last log. Reads them (one transfer) and
    returns the finite steps' metrics as floats (all steps' if none is finite).

    stop mode: raises `Diverged` at the first non-finite step, naming `last_checkpoint` (a step
    or None). skip mode: logs a warning per skipped step.
    """
    from jax_local.run_log import LOG
    steps, metrics = zip(*pending)
    rows = [(s, {k: float(v) for k, v in m.items()})
            for s, m in zip(steps, jax.device_get(metrics))]
    bad = [(s, r) for s, r in rows if not r["finite"]]
    if bad and self.mode == "stop":
      step, row = bad[0]
      kept = (f"the last good checkpoint is step {last_checkpoint}" if last_checkpoint is not None
              else "no checkpoint was written")
      raise Diverged(f"Training diverged: {diagnose(step, row)}. Stopped; {kept}. Lower "
                     "optim.lr, or set on_nonfinite=skip to skip such steps.", step)
    for step, row in bad:
      LOG.warning("skipped step (no update): %s", diagnose(step, row))
    good = [r for _, r in rows if r["finite"]]
    return good or [r for _, r in rows]

  def check(self, pending, last_checkpoint) -> None:
    """Before a checkpoint between log steps: in stop mode, `review` if a pending step was
    non-finite (reads only the flags otherwise)."""
    if self.mode == "stop" and pending:
      if not all(jax.device_get([m["finite"] for _, m in pending])):
        self.review(pending, last_checkpoint)
