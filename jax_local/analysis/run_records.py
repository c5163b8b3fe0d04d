"""The files a run writes into its workdir (`jax_local/train.py`), read without TensorFlow or JAX.

config.json (the resolved config), history.json (one test evaluation per epoch), metrics.jsonl
(every logged scalar), hparams.json (module count, written at the first start) and summary.json
(written once the run finishes).
"""
from __future__ import annotations

import json
import os

import ml_collections

from jax_local.run_log import read_json  # noqa: F401  (re-exported to the analysis tools)


class RunError(ValueError):
  """A workdir that cannot be read or analysed; the message says what is missing."""


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config.json as a ConfigDict; RunError if the directory or the file is missing."""
  if not os.path.isdir(workdir):
    raise RunError(f"{workdir}: no such run directory")
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise RunError(f"{workdir}: no config.json, so this is not a jax_local run directory (or its "
                   "run has not started: launch.py writes config.json before the first step)")
  return ml_collections.ConfigDict(read_json(path))


def read_metrics(workdir: str) -> list[dict]:
  """metrics.jsonl rows; a torn last line (a run killed while writing) is ignored."""
  rows = []
  path = os.path.join(workdir, "metrics.jsonl")
  if os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      for line in f:
        try:
          rows.append(json.loads(line))
        except json.JSONDecodeError:
          continue
  return rows


def method_label(config) -> str:
  """"dgl", "dgl+hpff", ...: the base method and its plugin."""
  plugin = config.method.get("plugin", "none")
  return config.method.name + ("" if plugin in ("none", None, "") else f"+{plugin}")
