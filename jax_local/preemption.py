"""Graceful stop on SIGTERM/SIGINT: finish the step, checkpoint, exit with status 75.

While a `StopOnSignal` is active the first SIGTERM or SIGINT only sets a flag; the trainer polls
it after each step, writes a checkpoint of that step and raises `Preempted`, which `launch.py`
turns into exit status `EXIT_PREEMPTED` (75, sysexits' EX_TEMPFAIL: "temporary failure, retry";
relaunching the same command resumes). A second signal gets the previous handler, so a second
Ctrl-C or SIGTERM interrupts at once.

With several processes a signal may reach them at different steps, so the flag is only acted
upon at sync points (log and checkpoint steps, which are the same steps on every process): there
a one-integer all-gather tells every process whether any of them was signalled, and all save the
same step.
"""
from __future__ import annotations

import signal
import threading

import jax
import numpy as np

EXIT_PREEMPTED = 75


class Preempted(Exception):
  """Training stopped on a signal after checkpointing `step`."""

  def __init__(self, step: int, signal_name: str):
    super().__init__(f"stopped by {signal_name} after checkpointing step {step}; relaunch the "
                     "same command to resume")
    self.step, self.signal_name = step, signal_name


class StopOnSignal:
  """Context manager turning `signals` into a stop request; see the module doc."""

  def __init__(self, signals=(signal.SIGTERM, signal.SIGINT)):
    self._signals = signals
    self._previous = {}
    self.received = None  # the first signal number received

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():  # signal.signal needs it
      for s in self._signals:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous = {}

  def _handle(self, signum, frame):
    if self.received is None:
      self.received = signum
    signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))  # a second one interrupts

  @property
  def signal_name(self) -> str:
    if self.received is None:
      return "a signal to another process"
    return signal.Signals(self.received).name

  def requested(self, sync_point: bool) -> bool:
    """Whether to stop now. With several processes only at sync points, agreed by all."""
    local = self.received is not None
    if jax.process_count() == 1:
      return local
    if not sync_point:
      return False
    from jax.experimental import multihost_utils
    return bool(np.max(multihost_utils.process_allgather(np.int32(local))))
