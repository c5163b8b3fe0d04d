"""Divergence guard: each step is checked on device; the host reads the flags when it logs.

`Guard(mode).step(train_step, state, batch)` runs an executor's step unchanged and adds
`metrics["finite"]`, computed on device: the loss, the gradient norm and every floating leaf of
the new state are finite (one small program per part of the state, shared by parts of equal
structure: `state_parts`). The flag travels with the other metrics, so checking costs no host sync;
the trainer reads it at log steps and before every checkpoint (`Guard.review`).

`on_nonfinite="stop"` (default): `review` raises `Diverged` naming the first bad step, the terms
whose loss is non-finite, the gradient norm and the LR. Nothing is checkpointed after a bad step,
so the newest checkpoint is the last good one.

`on_nonfinite="skip"`: a bad step is undone on device. Floating leaves (parameters, BN statistics,
optimizer moments) keep their values from before the step; integer leaves (the step and the
optimizer's count, hence the data position and the LR schedule) advance, so a skipped step is a
step with a zero update. Executors donate their input state, so undoing needs a copy taken before
the step: one extra state-sized buffer and one device copy per step, which is why skip is opt-in.
The guard counts the skipped steps (`Guard.skipped`, `Guard.window_skipped`); once they exceed
`max_skipped` (the trainer passes `max_skipped_fraction` x the run's steps), `enforce_budget`
raises `TooManySkipped` (exit status `EXIT_TOO_MANY_SKIPPED`): a run that skipped that much did
not train.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

EXIT_DIVERGED = 3
EXIT_TOO_MANY_SKIPPED = 4
MODES = ("stop", "skip")


class Diverged(FloatingPointError):
  """A non-finite loss, gradient or state at `step` stopped training."""
  exit_status = EXIT_DIVERGED

  def __init__(self, message: str, step: int):
    super().__init__(message)
    self.step = step


class TooManySkipped(Diverged):
  """on_nonfinite="skip" skipped more steps than the run allows."""
  exit_status = EXIT_TOO_MANY_SKIPPED


def _finite(tree):
  """Whether every floating leaf of `tree` is finite (a device bool)."""
  ok = jnp.ones((), bool)
  for x in jax.tree.leaves(tree):
    if jnp.issubdtype(x.dtype, jnp.floating):
      ok = ok & jnp.all(jnp.isfinite(x))
  return ok


def _keep_if(ok, new, old):
  """`new` where ok, else the floating leaves of `old` (integer leaves advance)."""
  keep = lambda n, o: jnp.where(ok, n, o) if jnp.issubdtype(n.dtype, jnp.floating) else n
  return jax.tree.map(keep, new, old)


def _all(loss, grad_norm, flags):
  return jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.all(jnp.stack(flags))


def state_parts(state) -> dict:
  """The state's arrays in parts: per backbone block and per head, its parameters, BN
  statistics and (with `part_optimizer`) optimizer state; then "rest": the step and any
  optimizer state kept for the whole tree. Parts of equal structure share compiled programs,
  where one program over every leaf of a ResNet-110 K=55 plugin state compiled for minutes."""
  opt = state.opt_state
  per_part = isinstance(opt, dict) and opt.keys() == state.params.keys() and all(
      opt[top].keys() == tree.keys() for top, tree in state.params.items())
  parts = {(top, name): (p, state.batch_stats[top].get(name, {}),
                         opt[top][name] if per_part else None)
           for top, tree in state.params.items() for name, p in tree.items()}
  parts["rest"] = (state.step, None if per_part else opt)
  return parts


def _join(state, parts):
  """Inverse of `state_parts` (the structure of `state`)."""
  step, whole_opt = parts["rest"]
  params, stats = {}, {top: dict(tree) for top, tree in state.batch_stats.items()}
  opt = whole_opt if whole_opt is not None else {}
  for (top, name), (p, st, o) in ((k, v) for k, v in parts.items() if k != "rest"):
    params.setdefault(top, {})[name] = p
    if name in stats[top]:
      stats[top][name] = st
    if whole_opt is None:
      opt.setdefault(top, {})[name] = o
  return state.replace(step=step, params=params, batch_stats=stats, opt_state=opt)


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

  def __init__(self, mode: str, max_skipped: float = float("inf"), skipped: int = 0):
    """max_skipped: skip mode fails once more steps than this were skipped; skipped: the count
    so far (a resumed run's)."""
    if mode not in MODES:
      raise ValueError(f"on_nonfinite={mode!r}; valid: {', '.join(MODES)}")
    self.mode = mode
    self.max_skipped = max_skipped
    self.skipped = skipped          # skipped steps in all, counted at each `review`
    self.window_skipped = 0         # skipped steps among the last `review`'s
    self._last_bad = None           # (step, metrics) of the last skipped step
    self._finite = jax.jit(_finite)
    self._all = jax.jit(_all)
    self._copy = jax.jit(lambda t: jax.tree.map(jnp.copy, t))
    self._keep_if = jax.jit(_keep_if, donate_argnums=1)

  def step(self, train_step, state, batch):
    """`train_step(state, batch)` plus metrics["finite"] (a device bool). The state is checked
    (and in skip mode copied and restored) part by part (`state_parts`)."""
    if self.mode == "skip":
      before = {k: self._copy(v) for k, v in state_parts(state).items()}
    state, metrics = train_step(state, batch)
    parts = state_parts(state)
    ok = self._all(metrics["loss"], metrics["grad_norm"],
                   [self._finite(v) for v in parts.values()])
    if self.mode == "skip":
      state = _join(state, {k: self._keep_if(ok, v, before[k]) for k, v in parts.items()})
    return state, {**metrics, "finite": ok}

  def review(self, pending, last_checkpoint) -> list[dict]:
    """pending: [(step, device metrics)] since the last log. Reads them (one transfer) and
    returns the finite steps' metrics as floats (all steps' if none is finite).

    stop mode: raises `Diverged` at the first non-finite step, naming `last_checkpoint` (a step
    or None). skip mode: logs a warning per skipped step and counts them.
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
    self.window_skipped = len(bad)
    self.skipped += len(bad)
    if bad:
      self._last_bad = bad[-1]
    good = [r for _, r in rows if r["finite"]]
    return good or [r for _, r in rows]

  def enforce_budget(self) -> None:
    """Raises `TooManySkipped` if more than `max_skipped` steps were skipped so far."""
    if self.skipped > self.max_skipped:
      step, row = self._last_bad
      raise TooManySkipped(
          f"on_nonfinite=skip skipped {self.skipped} steps by step {step}, more than the "
          f"{self.max_skipped:g} that max_skipped_fraction allows (last: {diagnose(step, row)}). "
          "Stopped: the run is not training; lower optim.lr", step)

  def check(self, pending, last_checkpoint) -> None:
    """Before a checkpoint between log steps: in stop mode, `review` if a pending step was
    non-finite (reads only the flags otherwise)."""
    if self.mode == "stop" and pending:
      if not all(jax.device_get([m["finite"] for _, m in pending])):
        self.review(pending, last_checkpoint)
