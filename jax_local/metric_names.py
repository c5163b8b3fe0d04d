"""The names under which a run records its metrics, the same for every method.

An executor's step returns raw metrics keyed by loss term ("<term>/<metric>", e.g. `bp/loss`,
`final_y/accuracy`, `m3/loss`) plus "loss", the plan's weighted sum of its terms. The term names
depend on the method, so the trainer renames them before writing (`public`):

  train/loss, train/accuracy, ...  the network's own classifier (the terms on the plan's
                                   `FINAL_HEAD`; under HiLo two terms read the same logits with
                                   the same CE, so they hold the same value and one is kept)
  train/weighted_total_loss        Σ weight · term loss: what the step minimises, which differs
                                   between methods and is not comparable across them
  local/<term>/<metric>            every other term, its module index zero-padded (`m03`,
                                   `cas07`) so names sort in module order
  eval/<metric>                    evaluation metrics (`eval_scalars`)

Every other key (lr, grad_norm, images_per_sec, epoch, skipped-step counts, memory) is kept.
"""
from __future__ import annotations

import re
from typing import Mapping

TRAIN_LOSS = "train/loss"
WEIGHTED_TOTAL = "train/weighted_total_loss"
EVAL = "eval/"
LOCAL = "local/"
TRAIN_ROW_KEYS = (TRAIN_LOSS, "loss")
"""Keys that mark a metrics.jsonl line as a training log step; "loss" (the weighted total) is
how runs written before these names mark them, so readers keep reading old runs."""


def padded_term(name: str, num_modules: int) -> str:
  """A term name with its trailing module index zero-padded to the width of the largest index
  (at least 2 digits): "m3" -> "m03", "cas12" -> "cas12", "stem" -> "stem"."""
  match = re.fullmatch(r"(.*?)(\d+)", name)
  if match is None:
    return name
  width = max(2, len(str(num_modules - 1)))
  return f"{match.group(1)}{int(match.group(2)):0{width}d}"


def term_names(plan) -> dict[str, str]:
  """{raw term name: public prefix} for every term of `plan` (a `plan.Plan`); the first term on
  the network's classifier maps to "train", later ones on it to None (duplicates, dropped)."""
  from jax_local.plan import FINAL_HEAD  # here, so that readers of run records need no Flax
  names, seen_final = {}, False
  for term in plan.terms:
    if term.head == FINAL_HEAD:
      names[term.name] = None if seen_final else "train"
      seen_final = True
    else:
      names[term.name] = LOCAL + padded_term(term.name, plan.num_modules)
  return names


def public(plan, metrics: Mapping[str, float]) -> dict[str, float]:
  """Raw step metrics (term-keyed, "loss" the weighted total) -> the public names above."""
  prefixes = term_names(plan)
  out = {}
  for key, value in metrics.items():
    term, sep, rest = key.partition("/")
    if key == "loss":
      out[WEIGHTED_TOTAL] = value
    elif sep and term in prefixes:
      if prefixes[term] is not None:
        out[f"{prefixes[term]}/{rest}"] = value
    else:
      out[key] = value
  return out


def eval_scalars(result: Mapping[str, object]) -> dict[str, float]:
  """An evaluation's history entry -> its scalars under "eval/": test_error -> eval/test_error;
  a per-head dict such as local_test_accuracy {"m03": a, ...} -> eval/local/m03/test_accuracy
  (local_test_accuracy_bn_reestimated -> eval/local/m03/test_accuracy_bn_reestimated)."""
  out = {}
  for key, value in result.items():
    if isinstance(value, Mapping):
      metric = key[len("local_"):]
      out.update({f"{EVAL}{LOCAL}{term}/{metric}": v for term, v in value.items()})
    else:
      out[EVAL + key] = value
  return out
