"""One log line per slow XLA compilation while a run is live: "compiling jit(train_step): 12.3 s".

A run's first step and first evaluation can spend minutes in XLA with nothing on the console
(the sequential executor compiles one program per distinct module, head and optimizer part).
JAX reports every backend compilation, hits of the persistent compilation cache included, to
`jax.monitoring` listeners with the program's name and duration; `logging_compiles()` turns
those reports into lines of jax_local's log for as long as it is entered, for every program
that took at least `MIN_SECONDS` (the many tiny programs of initialisation would drown the
rest). The listener is registered once per process and stays silent outside the context.
"""
from __future__ import annotations

import contextlib

import jax

from jax_local.run_log import LOG

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
MIN_SECONDS = 1.0

_active = [0]          # how many `logging_compiles` contexts are open
_registered = [False]


def _listener(event: str, duration: float, **kwargs) -> None:
  if event == BACKEND_COMPILE_EVENT and _active[0] and duration >= MIN_SECONDS:
    LOG.info("compiling %s: %.1f s", kwargs.get("fun_name", "a program"), duration)


@contextlib.contextmanager
def logging_compiles():
  """Logs every XLA compilation of this process of at least `MIN_SECONDS` inside the block."""
  if not _registered[0]:
    jax.monitoring.register_event_duration_secs_listener(_listener)
    _registered[0] = True
  _active[0] += 1
  try:
    yield
  finally:
    _active[0] -= 1
