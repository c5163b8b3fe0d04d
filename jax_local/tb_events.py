"""TensorBoard event files written with the `tensorboard` package alone (no TensorFlow).

`EventWriter(logdir)` creates `logdir/events.out.tfevents.<time>.<host>.<pid>.jax_local`, a
TFRecord file of `Event` protos: a version event, then one event per scalar (the scalar
plugin's tensor summary, float32, as `tf.summary.scalar` writes it) and one hparams event
(the hparams plugin's session-start summary). Records are written synchronously by
`tensorboard.summary.writer.record_writer.RecordWriter` into a plain Python file, so nothing
resolves `tensorboard.compat.tf` (which would import TensorFlow where it is installed).

`make_event_writer(logdir)` returns an `EventWriter`, or None with one warning when the
`tensorboard` package is not installed (runs then keep metrics.jsonl only). `drop_after(logdir,
step)` rewrites the event files of a resumed run without the records of later steps.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any, Mapping

LOG = logging.getLogger("jax_local")


class EventWriter:
  """Scalars and hparams as TensorBoard events in one file under `logdir`."""

  def __init__(self, logdir: str):
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import summary_v2 as hparams_summary
    from tensorboard.plugins.scalar import summary_v2 as scalar_summary
    from tensorboard.summary.writer.record_writer import RecordWriter
    self._event_pb2, self._scalar_pb = event_pb2, scalar_summary.scalar_pb
    self._hparams_pb = hparams_summary.hparams_pb
    os.makedirs(logdir, exist_ok=True)
    self.path = os.path.join(logdir, f"events.out.tfevents.{int(time.time()):010d}."
                             f"{socket.gethostname()}.{os.getpid()}.jax_local")
    self._records = RecordWriter(open(self.path, "wb"))
    self._add(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))
    self.flush()

  def _add(self, event) -> None:
    self._records.write(event.SerializeToString())

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """One event at `step` holding a float32 scalar summary per (name, value), flushed, so a
    killed run keeps them as it keeps its metrics.jsonl lines."""
    for name, value in scalars.items():
      summary = self._scalar_pb(name, float(value))
      self._add(self._event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))
    self.flush()

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    """The hparams plugin's session-start summary; values other than bool, int, float and
    str are written as their str()."""
    values = {k: v if isinstance(v, (bool, int, float, str)) else str(v)
              for k, v in hparams.items()}
    self._add(self._event_pb2.Event(wall_time=time.time(), summary=self._hparams_pb(values)))

  def flush(self) -> None:
    self._records.flush()

  def close(self) -> None:
    if not self._records.closed:
      self._records.close()


def drop_after(logdir: str, step: int) -> int:
  """Rewrites each event file in `logdir` without the events of steps after `step` (what a
  crashed launch logged past its last checkpoint, which the resumed run logs again); each file
  is replaced atomically. Returns the number of events dropped (0 without `tensorboard`)."""
  try:
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter
  except ImportError:
    return 0
  dropped = 0
  for name in sorted(os.listdir(logdir)) if os.path.isdir(logdir) else []:
    path = os.path.join(logdir, name)
    if not name.startswith("events.out.tfevents.") or not os.path.isfile(path):
      continue
    records = list(RawEventFileLoader(path).Load())
    keep = [r for r in records if event_pb2.Event.FromString(r).step <= step]
    if len(keep) == len(records):
      continue
    dropped += len(records) - len(keep)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
      writer = RecordWriter(f)
      for record in keep:
        writer.write(record)
      writer.flush()
    os.replace(tmp, path)
  return dropped


def make_event_writer(logdir: str) -> EventWriter | None:
  """An `EventWriter` for `logdir`, or None (one warning) if `tensorboard` is not installed."""
  try:
    import tensorboard  # noqa: F401
  except ImportError:
    LOG.warning("the tensorboard package is not installed: no TensorBoard events in %s "
                "(metrics.jsonl holds every scalar)", logdir)
    return None
  return EventWriter(logdir)
