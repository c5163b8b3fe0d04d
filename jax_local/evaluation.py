"""Evaluation of a training state: the network's own classifier and every local head, on the test
split and, when the run holds one out, on the validation split.

One jitted step per batch returns sums, so a split is evaluated in full whatever the batch or
device count (the last batch is padded and masked). Besides the network's accuracy, error and
cross-entropy it counts, for every loss term whose head predicts classes (`heads/common.py`:
"accuracy"), the examples its head classifies right from its module's output: the layer-wise
test accuracy of the local heads, keyed by the term's public name (`metric_names.term_names`,
e.g. "m03", "cas07"). Heads run in eval mode (running BatchNorm statistics), as the network does.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jax_local import bn_reestimate, metric_names, parallel, run_log
from jax_local.engine import forward
from jax_local.models.backbone import apply_with_stats
from jax_local.plan import FINAL_HEAD

REESTIMATED = run_log.REESTIMATED


def _local_terms(plan):
  """[(public term name, term)] of every term on an auxiliary head."""
  names = metric_names.term_names(plan)
  return [(names[t.name][len(metric_names.LOCAL):], t) for t in plan.terms
          if t.head != FINAL_HEAD]


def make_eval_step(plan, par: parallel.Parallel | None = None, local_heads: bool = True):
  """(params, stats, batch) -> {"correct", "ce", "count": sums over the real examples of the
  network's classifier, "local": {term: examples its head classified right} (empty unless
  `local_heads`, config.eval.local_heads: the heads cost a forward pass each)}.

  batch: {"image" [N, H, W, C] normalised, "label" int32 [N], "mask" float32 [N]}; decoder heads
  read the de-normalised image (`forward.with_image01`, the plan's normalisation). Padded rows
  get the label -1, which no head predicts, so a head's mean accuracy times N counts real rows only.
  With `par` the batch is a global array sharded over the mesh and the sums are global."""
  local = _local_terms(plan) if local_heads else []

  def eval_step(params, stats, batch):
    mask = batch["mask"]
    labels = batch["label"]
    h, outputs = batch["image"], []
    for i in range(plan.num_modules):
      h, _ = forward.apply_module(plan, i, params, stats, h, train=False)
      outputs.append(h)
    logits = h.astype(jnp.float32)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1)[:, 0]
    head_batch = forward.with_image01(
        {**batch, "label": jnp.where(mask > 0, labels, -1)}, plan.normalisation)
    heads = {}
    for name, term in local:
      (_, metrics), _ = apply_with_stats(
          plan.heads[term.head], params["heads"].get(term.head, {}),
          stats["heads"].get(term.head, {}), outputs[term.last], head_batch, train=False)
      if "accuracy" in metrics:
        heads[name] = metrics["accuracy"].astype(jnp.float32) * labels.shape[0]
    return {"correct": jnp.sum(correct * mask), "ce": jnp.sum(ce * mask),
            "count": jnp.sum(mask), "local": heads}

  return jax.jit(eval_step) if par is None else par.eval_step(eval_step)


def evaluate(eval_step, state, dataset, batch_size, par: parallel.Parallel | None = None,
             split: str = "test") -> dict:
  """Metrics of `split` ("test" or "validation") in full: {split}_accuracy, _error (%), _loss,
  _examples, and local_{split}_accuracy {term: accuracy} when the plan has local heads that
  classify. Each process feeds its local rows (padding masked); the sums are global."""
  totals = None
  batches = dataset.eval_batches(batch_size, split)
  for batch in (batches if par is None else par.prefetch(batches)):
    sums = jax.device_get(eval_step(state.params, state.batch_stats, batch))
    totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
  count = float(totals["count"])
  accuracy = float(totals["correct"]) / count
  result = {f"{split}_accuracy": accuracy, f"{split}_error": 100.0 * (1 - accuracy),
            f"{split}_loss": float(totals["ce"]) / count, f"{split}_examples": int(count)}
  if totals["local"]:
    result[f"local_{split}_accuracy"] = {k: float(v) / count for k, v in totals["local"].items()}
  return result


def evaluate_both(config, eval_step, batch_statistics, state, dataset, epoch: int,
                  par: parallel.Parallel) -> dict:
  """One evaluation as the trainer records it: the test split (and the validation split, when
  the dataset holds one) with the running BN statistics and, when `eval.bn_recompute_batches`
  > 0, the test split also with statistics re-estimated over that many augmented training
  batches of `epoch`'s order (`bn_reestimate`); those metrics carry the suffix `REESTIMATED`,
  and `bn_reestimate_seconds` is the time the re-estimation took."""
  batch_size = config.data.eval_batch_size
  result = evaluate(eval_step, state, dataset, batch_size, par)
  if dataset.validation is not None:
    result.update(evaluate(eval_step, state, dataset, batch_size, par, "validation"))
  num_batches = config.eval.bn_recompute_batches
  if not num_batches:
    return result
  batches = par.prefetch(dataset.train_batches(epoch, 0, config.data.batch_size, True))
  stats, used, seconds = bn_reestimate.reestimate(batch_statistics, state.params,
                                                  state.batch_stats, batches, num_batches)
  stats = par.put_replicated(stats)
  again = evaluate(eval_step, state.replace(batch_stats=stats), dataset, batch_size, par)
  result.update({f"{k}{REESTIMATED}": v for k, v in again.items() if k != "test_examples"})
  result.update(bn_reestimate_batches=used, bn_reestimate_seconds=seconds)
  return result
