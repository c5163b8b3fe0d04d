"""Run records in the workdir: metric writers, the atomic evaluation history, the config.

`metrics.jsonl` holds one line per `write_scalars` call ({"step": s, name: value, ...}), so
analysis tools read a run without TensorBoard; it is strict JSON (a NaN or infinity is written
as null and its name listed under "nonfinite"); `hparams.json` holds the `write_hparams` dict.
`make_writer(workdir, is_main)` gives the run's writer: on the main process the JSONL writer
and a TensorBoard event writer (`tb_events`, no TensorFlow; left out with one warning if
`tensorboard` is not installed), elsewhere a writer that drops everything. `history.json` holds
one entry per evaluation and is rewritten atomically (write to a temporary file, then rename).
`config.json` is the config of the run; `config_diff` lists what a resumed run changed.
`drop_records_after(workdir, step)` removes from metrics.jsonl and the TensorBoard events what a
crashed launch logged after the checkpoint that the next launch resumes from.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
from typing import Any, Mapping



REESTIMATED = "_bn_reestimated"
"""Suffix of the test metrics measured with re-estimated BN statistics (`train.evaluate_both`)."""

LOG = logging.getLogger("jax_local")
"""Progress and results of jax_local; library INFO chatter (orbax, tfds) stays in absl's log."""


def configure_console(verbose: bool = True) -> None:
  """Sends jax_local's log to stderr with a timestamp (INFO if verbose, else WARNING)."""
  if not LOG.handlers:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    LOG.addHandler(handler)
  LOG.setLevel(logging.INFO if verbose else logging.WARNING)
  LOG.propagate = False


class _Formatter(logging.Formatter):
  """Time and message; warnings and errors also name their level."""

  def format(self, record):
    text = super().format(record)
    if record.levelno >= logging.WARNING:
      time_, _, message = text.partition(" ")
      text = f"{time_} {record.levelname}: {message}"
    return text


class JsonlWriter:
  """Appends scalars as JSON lines, flushed per write so a killed run keeps them."""

  def __init__(self, path: str):
    self._path = path
    self._file = open(path, "a", encoding="utf-8")

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    """One strict-JSON line: a non-finite value is written as null, and its name listed under
    "nonfinite"."""
    values = {k: float(v) for k, v in scalars.items()}
    bad = sorted(k for k, v in values.items() if not math.isfinite(v))
    row = {"step": int(step), **{k: None if k in bad else v for k, v in values.items()},
           **({"nonfinite": bad} if bad else {})}
    self._file.write(json.dumps(row, allow_nan=False) + "\n")
    self._file.flush()

  def write_hparams(self, hparams: Mapping[str, Any]):
    write_json_atomic(os.path.join(os.path.dirname(self._path), "hparams.json"), dict(hparams))

  def flush(self):
    self._file.flush()

  def close(self):
    self._file.close()


class MultiWriter:
  """Forwards write_scalars, write_hparams, flush and close to each of `writers` in order
  (an empty list drops everything)."""

  def __init__(self, writers):
    self.writers = list(writers)

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    for w in self.writers:
      w.write_scalars(step, scalars)

  def write_hparams(self, hparams: Mapping[str, Any]):
    for w in self.writers:
      w.write_hparams(hparams)

  def flush(self):
    for w in self.writers:
      w.flush()

  def close(self):
    for w in self.writers:
      w.close()


def make_writer(workdir: str, is_main: bool) -> MultiWriter:
  """The metric writer of a run in `workdir`: metrics.jsonl and hparams.json, plus TensorBoard
  events in `workdir` when `tensorboard` is installed, on the main process; nothing elsewhere."""
  if not is_main:
    return MultiWriter([])
  from jax_local import tb_events
  events = tb_events.make_event_writer(workdir)
  return MultiWriter([JsonlWriter(os.path.join(workdir, "metrics.jsonl")),
                      *([events] if events is not None else [])])


def drop_records_after(workdir: str, step: int) -> int:
  """Removes the metrics.jsonl lines and TensorBoard events of steps after `step` (rewriting
  the files atomically); returns how many records were dropped."""
  from jax_local import tb_events
  path = os.path.join(workdir, "metrics.jsonl")
  dropped = 0
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      lines = [line for line in f if line.strip()]
    keep = [line for line in lines if _step_of(line) <= step]
    if len(keep) < len(lines):
      dropped = len(lines) - len(keep)
      tmp = f"{path}.tmp.{os.getpid()}"
      with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(keep)
      os.replace(tmp, path)
  return dropped + tb_events.drop_after(workdir, step)


def _step_of(line: str) -> float:
  """The step of a metrics.jsonl line; infinity for a line cut short by a crash (dropped)."""
  try:
    return json.loads(line)["step"]
  except (ValueError, KeyError):
    return math.inf


def write_json_atomic(path: str, obj) -> None:
  tmp = f"{path}.tmp.{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=1, default=str)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def read_json(path: str, default=None):
  """The JSON value in `path`, or `default` if the file does not exist."""
  if not os.path.exists(path):
    return default
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_diff(old: Mapping, new: Mapping) -> list[str]:
  """Lines "field: old -> new" for every field (dotted path) that differs between two configs
  given as nested dicts (e.g. `json.loads(config.to_json())`); absent fields show as <absent>."""
  a, b = _flatten(dict(old)), _flatten(dict(new))
  absent = "<absent>"
  return [f"{k}: {json.dumps(a.get(k, absent))} -> {json.dumps(b.get(k, absent))}"
          for k in sorted(set(a) | set(b)) if a.get(k, absent) != b.get(k, absent)]
