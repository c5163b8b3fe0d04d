"""train_and_evaluate(config, workdir): build, resume, train, evaluate, checkpoint, summarise.

Reads top to bottom: validate the config, load data, build the plan, initialise or restore the
state, then loop over epochs (`_loop`). The workdir holds `checkpoints/`, `metrics.jsonl` (every
logged scalar), `history.json` (one entry per evaluation), `config.json`, TensorBoard event files
and, at the end, `summary.json`.

Scale (README "Running on clusters"): `parallel.Parallel` puts every device of every process on a
`data` mesh axis; batches become global arrays sharded along it, the state is replicated, and the
layer policy (compute dtype, BatchNorm statistics groups) is entered around each step. Only
process 0 writes metrics, history, config and summary files; every process takes part in
checkpoint saves and restores.

Faults (README "When things go wrong"): SIGTERM/SIGINT checkpoint the current step and raise
`preemption.Preempted`; every step is checked for non-finite values on device
(`divergence.Guard`); unreadable checkpoints are skipped (`checkpointing`); a config that differs
from the saved `config.json` is reported.
"""
from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from jax_local import (bn_reestimate, checkpointing, config_validation, divergence, memory,
                       methods, optim, parallel, part_optimizer, preemption, run_log)
from jax_local.data import input_pipeline
from jax_local import engine
from jax_local.engine import forward
from jax_local.models import build_backbone
from jax_local.run_log import LOG
from jax_local.train_state import init_state


def build(config, dataset):
  """(plan, tx, schedule, steps_per_epoch) for a validated config and a loaded dataset."""
  split = config_validation.validate_config(config)
  backbone = build_backbone(config.model, dataset.num_classes)
  plan = methods.build_plan(config.method, backbone, split, dataset.num_classes)
  steps_per_epoch = dataset.steps_per_epoch(config.data.batch_size, config.data.drop_remainder)
  schedule = optim.make_schedule(config.optim, config.num_epochs, steps_per_epoch)
  tx = part_optimizer.PartOptimizer(
      optim.make_optimizer(config.optim, config.num_epochs, steps_per_epoch), plan.ema_pairs)
  return plan, tx, schedule, steps_per_epoch


def make_eval_step(plan, par: parallel.Parallel | None = None):
  """(params, stats, batch) -> (sum of correct, sum of CE, number of real examples).

  With `par`, the batch is a global array sharded over the mesh and the sums are over the
  global batch (every process gets them, replicated)."""

  def eval_step(params, stats, batch):
    logits = forward.evaluate_logits(plan, params, stats, batch["image"]).astype(jnp.float32)
    mask = batch["mask"]
    labels = batch["label"]
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], axis=-1)[:, 0]
    return jnp.sum(correct * mask), jnp.sum(ce * mask), jnp.sum(mask)

  return jax.jit(eval_step) if par is None else par.eval_step(eval_step)


def evaluate(eval_step, state, dataset, batch_size,
             par: parallel.Parallel | None = None) -> dict[str, float]:
  """Test metrics over the whole split: each process feeds its local rows (padding masked), the
  sums are global, so every example counts once whatever the process count."""
  totals = np.zeros(3)
  batches = dataset.eval_batches(batch_size)
  for batch in (batches if par is None else par.prefetch(batches)):
    totals += np.asarray(jax.device_get(eval_step(state.params, state.batch_stats, batch)))
  correct, ce, count = totals
  return {"test_accuracy": correct / count, "test_error": 100.0 * (1 - correct / count),
          "test_loss": ce / count, "test_examples": int(count)}


REESTIMATED = "_bn_reestimated"  # suffix of the test metrics with re-estimated BN statistics


def evaluate_both(config, eval_step, batch_statistics, state, dataset, epoch: int,
                  par: parallel.Parallel) -> dict[str, float]:
  """Test metrics with the running BN statistics and, when `eval.bn_recompute_batches` > 0,
  also with statistics re-estimated over that many augmented training batches of `epoch`'s
  order (`bn_reestimate`); those metrics carry the suffix `REESTIMATED`, and
  `bn_reestimate_seconds` is the time the re-estimation took."""
  result = evaluate(eval_step, state, dataset, config.data.eval_batch_size, par)
  num_batches = config.eval.bn_recompute_batches
  if not num_batches:
    return result
  batches = par.prefetch(dataset.train_batches(epoch, 0, config.data.batch_size, True))
  stats, used, seconds = bn_reestimate.reestimate(batch_statistics, state.params,
                                                  state.batch_stats, batches, num_batches)
  stats = par.put_replicated(stats)
  again = evaluate(eval_step, state.replace(batch_stats=stats), dataset,
                   config.data.eval_batch_size, par)
  result.update({f"{k}{REESTIMATED}": v for k, v in again.items() if k != "test_examples"})
  result.update(bn_reestimate_batches=used, bn_reestimate_seconds=seconds)
  return result


def format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _report_config_changes(workdir: str, config_dict: dict) -> list[str]:
  """Warns about fields that differ from the run's saved config.json; returns the diff lines."""
  saved = run_log.read_json(os.path.join(workdir, "config.json"))
  changes = run_log.config_diff(saved, config_dict) if saved is not None else []
  if changes:
    LOG.warning("the config differs from the one this workdir was run with (%s):\n  %s",
                os.path.join(workdir, "config.json"), "\n  ".join(changes))
  return changes


def _save_config(workdir: str, config_dict: dict, changed: bool, step: int) -> None:
  """Writes config.json; a changed config keeps the previous one as config.until_step<N>.json."""
  if jax.process_index() != 0:
    return
  path = os.path.join(workdir, "config.json")
  if changed:
    os.replace(path, os.path.join(workdir, f"config.until_step{step}.json"))
  run_log.write_json_atomic(path, config_dict)


def train_and_evaluate(config, workdir: str, return_state: bool = False):
  """Trains `config` in `workdir` (resuming if a checkpoint exists); returns the summary dict
  (and the final TrainState, replicated over the mesh, if return_state).

  Raises:
    preemption.Preempted: SIGTERM/SIGINT arrived; the step reached is checkpointed.
    divergence.Diverged: a non-finite step with on_nonfinite="stop"; no checkpoint after it.
    checkpointing.CheckpointMismatch: the checkpoint holds arrays of other shapes.
  """
  os.makedirs(workdir, exist_ok=True)
  config_validation.validate_config(config)
  config_dict = json.loads(config.to_json())
  changes = _report_config_changes(workdir, config_dict)
  with preemption.StopOnSignal() as stop:  # before data loading, so a signal then is graceful
    dataset = input_pipeline.build_dataset(config.data, config.seed, jax.process_index(),
                                           jax.process_count())
    plan, tx, schedule, steps_per_epoch = build(config, dataset)
    par = parallel.Parallel.from_config(config)
    _check_last_batch(config, dataset, par)
    LOG.info("%s", plan.description)
    LOG.info("gradient-isolated modules: %d; steps/epoch %d; %d epochs", plan.num_modules,
             steps_per_epoch, config.num_epochs)
    LOG.info("data parallel over %d devices in %d processes (%d per device); compute %s; "
             "BatchNorm statistics %s", par.num_shards, jax.process_count(),
             config.data.batch_size // par.num_shards, config.model.get("dtype", "float32"),
             config.model.get("bn_stats", "global"))

    init_fn = lambda rng: init_state(plan, tx, rng, dataset.image_shape)
    rng = jax.random.PRNGKey(config.seed)
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"),
                                      config.max_checkpoints_to_keep)
    state = ckpt.restore(par.abstract_state(init_fn, rng))  # arrays restored replicated
    history_path = os.path.join(workdir, "history.json")
    history = run_log.read_json(history_path, [])
    if state is not None:
      LOG.info("resumed from step %d", int(state.step))
    else:
      state = par.init(init_fn, rng)
    start = int(state.step)
    history = [h for h in history if h["step"] <= start]
    _save_config(workdir, config_dict, bool(changes), start)

    train_step = par.train_step(config.executor, engine.make_train_step(
        config.executor, plan, tx, schedule, dataset.mean, dataset.std))
    guard = divergence.Guard(config.get("on_nonfinite", "stop"))
    eval_step = make_eval_step(plan, par)
    batch_statistics = bn_reestimate.make_batch_statistics(plan, par)
    writer = run_log.make_writer(workdir, jax.process_index() == 0)
    if start == 0:
      writer.write_hparams({"config": config.to_json(), "num_modules": plan.num_modules})
    try:
      evaluate_fn = lambda state, epoch: evaluate_both(config, eval_step, batch_statistics,
                                                       state, dataset, epoch, par)
      history, state = _loop(config, dataset, state, train_step, guard, evaluate_fn, writer,
                             ckpt, stop, history, history_path, steps_per_epoch, par)
    finally:
      writer.close()
      ckpt.close()  # waits for the last (good) checkpoint, also when stopping on an error

  summary = summarise(config, plan, history)
  if jax.process_index() == 0:
    run_log.write_json_atomic(os.path.join(workdir, "summary.json"), summary)
  LOG.info("summary: %s", json.dumps(summary))
  return (summary, state) if return_state else summary


def _check_last_batch(config, dataset, par) -> None:
  """The partial last training batch must shard over the devices too."""
  last = dataset.last_batch_size(config.data.batch_size, config.data.drop_remainder)
  if last % par.num_shards:
    raise config_validation.ConfigError(
        f"the partial last training batch of each epoch has {last} examples (of "
        f"{dataset.num_train} with config.data.batch_size={config.data.batch_size}), which "
        f"does not split over {par.num_shards} devices; set config.data.drop_remainder=True, or "
        "a batch size or data.train_subset that leaves a multiple of the device count")


def _loop(config, dataset, state, train_step, guard, evaluate_fn, writer, ckpt, stop, history,
          history_path, steps_per_epoch, par):
  """The epoch loop from `state.step` on; returns (evaluation history, final state).

  evaluate_fn(state, epoch) -> the test metrics of one evaluation (`evaluate_both`)."""
  step = start = int(state.step)
  total_steps = steps_per_epoch * config.num_epochs
  t_log, imgs_since_log, pending = time.time(), 0, []
  t_run = time.time()
  for epoch in range(start // steps_per_epoch, config.num_epochs):
    batches = par.prefetch(dataset.train_batches(epoch, step % steps_per_epoch,
                                                 config.data.batch_size,
                                                 config.data.drop_remainder))
    for batch in batches:
      state, metrics = guard.step(train_step, state, batch)
      step += 1
      imgs_since_log += batch["label"].shape[0]  # a global array: the global batch
      pending.append((step, metrics))
      log_now = step % config.log_every_steps == 0 or step % steps_per_epoch == 0
      save_now = bool(config.checkpoint_every_steps) and step % config.checkpoint_every_steps == 0
      stop_now = stop.requested(sync_point=log_now or save_now)
      if log_now or stop_now:
        rows = guard.review(pending, ckpt.latest_step())
        mean_metrics = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "finite"}
        if len(rows) < len(pending):
          mean_metrics["nonfinite_steps"] = len(pending) - len(rows)
        now = time.time()
        mean_metrics["images_per_sec"] = imgs_since_log / max(now - t_log, 1e-9)
        mean_metrics["epoch"] = step / steps_per_epoch
        mean_metrics.update(memory.peak_memory_record())
        writer.write_scalars(step, mean_metrics)
        rate = (step - start) / max(now - t_run, 1e-9)
        LOG.info("epoch %d/%d step %d/%d | loss %.4f | lr %.4g | %.1f img/s | ETA %s",
                 epoch + 1, config.num_epochs, step, total_steps, mean_metrics["loss"],
                 mean_metrics["lr"], mean_metrics["images_per_sec"],
                 format_eta((total_steps - step) / max(rate, 1e-9)))
        t_log, imgs_since_log, pending = now, 0, []
      if save_now or stop_now:
        guard.check(pending, ckpt.latest_step())  # never checkpoint a diverged state
        ckpt.save(state)
      if stop_now:
        raise preemption.Preempted(step, stop.signal_name)
    epoch_done = epoch + 1
    if epoch_done % config.eval_every_epochs == 0 or epoch_done == config.num_epochs:
      result = evaluate_fn(state, epoch)
      writer.write_scalars(step, result)
      if REESTIMATED in "".join(result):
        LOG.info("epoch %d: test error %.2f%% with running BN statistics, %.2f%% with "
                 "statistics re-estimated on %d training batches (%.1f s)", epoch_done,
                 result["test_error"], result["test_error" + REESTIMATED],
                 result["bn_reestimate_batches"], result["bn_reestimate_seconds"])
      else:
        LOG.info("epoch %d: test accuracy %.4f (error %.2f%%)", epoch_done,
                 result["test_accuracy"], result["test_error"])
      history.append({"epoch": epoch_done, "step": step, **result})
      if jax.process_index() == 0:
        run_log.write_json_atomic(history_path, history)
    ckpt.save(state)
    if stop.requested(sync_point=True):
      raise preemption.Preempted(step, stop.signal_name)
  return history, state


def summarise(config, plan, history) -> dict:
  """Final and best test error over the evaluations, with each kind of BN statistics present."""
  summary = {
      "method": config.method.name, "dataset": config.data.name,
      "model": f"{config.model.arch}{config.model.depth}", "split": config.split.preset,
      "num_modules": plan.num_modules, "epochs": history[-1]["epoch"] if history else 0,
  }
  for suffix in ("", REESTIMATED):
    errors = [h[f"test_error{suffix}"] for h in history if f"test_error{suffix}" in h]
    if errors or not suffix:
      summary[f"final_test_error{suffix}"] = errors[-1] if errors else None
      summary[f"best_test_error{suffix}"] = min(errors) if errors else None
  return summary
