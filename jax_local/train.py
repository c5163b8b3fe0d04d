"""train_and_evaluate(config, workdir): build, resume, train, evaluate, checkpoint, summarise.

Reads top to bottom: validate the config, take the workdir lock (`workdir_lock`, process 0),
load data, build the experiment (`experiment.build`), initialise or restore the state (dropping
the metric records a crashed launch wrote past its last checkpoint), then loop over epochs
(`_loop`: each step's metrics are the executor's plus the learning rate from the schedule,
`step_learning_rate`), logging each XLA compilation (`compile_log`). The workdir holds
`run.lock` while the run is live, `checkpoints/`, `best_checkpoint/` (with
`data.validation_size` > 0: the evaluation of lowest validation error, `BestCheckpoint`),
`metrics.jsonl` (every logged scalar, under the names of `metric_names`), `history.json` (one
entry per evaluation, `evaluation`), `config.json`, TensorBoard event files and, at the end,
`summary.json` (`summarise`).

Scale (README "Running on clusters"): `parallel.Parallel` puts every device of every process on a
`data` mesh axis; batches become global arrays sharded along it, the state is replicated, and the
layer policy (compute dtype, BatchNorm statistics groups) is entered around each step. Only
process 0 writes metrics, history, config and summary files; every process takes part in
checkpoint saves and restores.

Faults (README "When things go wrong"): SIGTERM/SIGINT checkpoint the current step and raise
`preemption.Preempted`; every step is checked for non-finite values on device
(`divergence.Guard`); unreadable checkpoints are skipped (`checkpointing`); a config that differs
from the saved `config.json` is reported; with `on_nonfinite="skip"`, skipping more than
`max_skipped_fraction` of the steps raises `divergence.TooManySkipped`.
"""
from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from jax_local import (bn_reestimate, checkpointing, compile_log, config_validation, divergence,
                       evaluation, experiment, memory, metric_names, parallel, preemption,
                       run_info, run_log, workdir_lock)
from jax_local.data import input_pipeline
from jax_local import engine
from jax_local.run_log import LOG
from jax_local.train_state import init_state


REESTIMATED = run_log.REESTIMATED


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


def train_and_evaluate(config, workdir: str, return_state: bool = False, mock_examples: int = 0,
                       devices=None, validated: bool = False):
  """Trains `config` in `workdir` (resuming if a checkpoint exists); returns the summary dict
  (and the final TrainState, replicated over the mesh, if return_state).

  The config is validated before the workdir is created; process 0 then holds the workdir lock
  (`workdir_lock`) until the end. `mock_examples` > 0 marks a run on mock data (summary and
  hparams say so). `devices`: the devices of the mesh (default every device). `validated`:
  the caller ran `config_validation.validate_config` already (launch.py, before anything else).

  Raises:
    config_validation.ConfigError: an invalid config; nothing was written.
    workdir_lock.WorkdirLocked: another live run holds the workdir; nothing was written.
    workdir_lock.WorkdirUnwritable: the workdir cannot be created or written.
    preemption.Preempted: SIGTERM/SIGINT arrived; the step reached is checkpointed.
    divergence.Diverged: a non-finite step with on_nonfinite="stop", or more skipped steps than
      `max_skipped_fraction` allows with "skip" (`divergence.TooManySkipped`).
    checkpointing.CheckpointMismatch: the checkpoint holds arrays of other shapes.
  """
  t_start = time.time()
  if not validated:
    config_validation.validate_config(config, None if devices is None else len(devices))
  lock = workdir_lock.WorkdirLock(workdir)
  error = None
  if jax.process_index() == 0:
    try:
      lock.acquire()
    except (workdir_lock.WorkdirLocked, workdir_lock.WorkdirUnwritable) as e:
      error = e
  if jax.process_count() > 1:  # every process stops if process 0 could not take the lock
    from jax.experimental import multihost_utils
    if multihost_utils.broadcast_one_to_all(np.int32(error is not None)) and error is None:
      raise workdir_lock.WorkdirLocked(f"process 0 could not take the lock of {workdir}")
  if error is not None:
    raise error
  try:
    return _train_and_evaluate(config, workdir, return_state, mock_examples, devices, t_start)
  finally:
    lock.release()


def _train_and_evaluate(config, workdir, return_state, mock_examples, devices, t_start):
  os.makedirs(workdir, exist_ok=True)
  config_dict = json.loads(config.to_json())
  saved_config = run_log.read_json(os.path.join(workdir, "config.json"))
  changes = _report_config_changes(workdir, config_dict)
  # signals handled before data loading, so a signal then is graceful
  with preemption.StopOnSignal() as stop, compile_log.logging_compiles():
    dataset = input_pipeline.build_dataset(config.data, config.seed, jax.process_index(),
                                           jax.process_count())
    exp = experiment.build(config, dataset)
    plan, tx, schedule, steps_per_epoch = exp.plan, exp.tx, exp.schedule, exp.steps_per_epoch
    par = parallel.Parallel.from_config(
        config, None if devices is None else parallel.make_mesh(devices))
    _check_last_batch(config, dataset, par)
    LOG.info("%s", plan.description)
    LOG.info("gradient-isolated modules: %d; steps/epoch %d; %d epochs", plan.num_modules,
             steps_per_epoch, config.num_epochs)
    if config.executor == "pipelined":  # its stages and devices: logged at the first step
      layout = (f"{par.num_shards} devices in {jax.process_count()} processes, in the pipelined "
                "executor's ('stage', 'data') mesh")
    else:
      layout = (f"data parallel over {par.num_shards} devices in {jax.process_count()} processes "
                f"({config.data.batch_size // par.num_shards} per device)")
    LOG.info("%s; compute %s; BatchNorm statistics %s", layout,
             config.model.get("dtype", "float32"), config.model.get("bn_stats", "global"))

    init_fn = lambda rng: init_state(plan, tx, rng, dataset.image_shape)
    rng = jax.random.PRNGKey(config.seed)
    ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"),
                                      config.max_checkpoints_to_keep)
    # only a resume needs the state's shapes: a fresh run does not trace the whole init for them
    state = ckpt.restore(par.abstract_state(init_fn, rng)) if ckpt.all_steps() else None
    history_path = os.path.join(workdir, "history.json")
    history = run_log.read_json(history_path, [])
    if state is not None:
      LOG.info("resumed from step %d", int(state.step))
    else:
      state = par.init(init_fn, rng)
    start = int(state.step)
    history = [h for h in history if h["step"] <= start]
    if jax.process_index() == 0:
      dropped = run_log.drop_records_after(workdir, start)
      if dropped:
        LOG.info("dropped %d metric records of steps after %d, logged by the previous launch "
                 "past its last checkpoint", dropped, start)
    before = history[-1] if history else {}  # what the launches before this one counted
    _save_config(workdir, config_dict, bool(changes), start)

    executor = engine.make_train_step(config.executor, plan, tx, config.get("pipeline"))
    train_step = par.train_step(executor)
    learning_rate = step_learning_rate(schedule, executor.updates_per_step)
    if start and saved_config is not None:
      _warn_changed_horizon(saved_config, config, learning_rate, start)
    total_steps = steps_per_epoch * config.num_epochs
    guard = divergence.Guard(
        config.get("on_nonfinite", "stop"),
        max_skipped=config.get("max_skipped_fraction", 0.01) * total_steps,
        skipped=before.get("skipped_steps", 0))
    eval_step = evaluation.make_eval_step(plan, par, config.eval.get("local_heads", True))
    batch_statistics = bn_reestimate.make_batch_statistics(plan, par)
    writer = run_log.make_writer(workdir, jax.process_index() == 0)
    if start == 0:
      writer.write_hparams(run_info.hparams(config, plan.num_modules, mock_examples))
    best = BestCheckpoint(workdir, history) if dataset.validation is not None else None
    elapsed_before = before.get("elapsed_s", 0.0)
    try:
      def evaluate_fn(state, epoch):
        result = evaluation.evaluate_both(config, eval_step, batch_statistics, state, dataset,
                                          epoch, par)
        result.update(skipped_steps=guard.skipped,
                      elapsed_s=elapsed_before + time.time() - t_start)
        return result

      history, state = _loop(config, plan, dataset, state, train_step, learning_rate, guard,
                             evaluate_fn, writer, ckpt, best, stop, history, history_path,
                             steps_per_epoch, par)
    finally:
      writer.close()
      ckpt.close()  # waits for the last (good) checkpoint, also when stopping on an error
      if best is not None:
        best.close()

  summary = summarise(config, plan, history, state.params,
                      history[-1]["elapsed_s"] if history and "elapsed_s" in history[-1]
                      else time.time() - t_start, mock_examples)
  if jax.process_index() == 0:
    run_log.write_json_atomic(os.path.join(workdir, "summary.json"), summary)
  LOG.info("summary: %s", json.dumps(summary))
  return (summary, state) if return_state else summary


def step_learning_rate(schedule, updates_per_step: int):
  """k -> the learning rate of step k (0-based), schedule(k·updates_per_step): the rate of the
  step's update, or of its first one when it makes several (`Executor.updates_per_step`). A
  device scalar, dispatched without waiting, read with the step's metrics."""
  jitted = jax.jit(lambda k: schedule(k * updates_per_step))
  return lambda k: jitted(np.int32(k))


def _warn_changed_horizon(saved: dict, config, learning_rate, start: int):
  """One warning when a resumed run changed num_epochs: the schedule is a function of the whole
  run's length, so the learning rate from `start` on follows the new length's schedule.
  learning_rate: step -> its rate (`step_learning_rate`), so that the rate printed is step
  `start`'s whatever the updates per step."""
  old = saved.get("num_epochs")
  if old is None or old == config.num_epochs:
    return
  LOG.warning(
      "num_epochs changed from %s to %d on resume: the learning-rate schedule is laid out over "
      "the whole run, so from step %d on it follows the schedule of a %d-epoch run (lr %.4g "
      "now) instead of continuing the %s-epoch one; relaunch with --config.num_epochs=%s to "
      "keep the original horizon", old, config.num_epochs, start, config.num_epochs,
      float(learning_rate(start)), old, old)


class BestCheckpoint:
  """The checkpoint of the evaluation with the lowest validation error, in
  `workdir/best_checkpoint/<step>`, apart from the rolling `checkpoints/` so that rotation never
  deletes it; only the current best is kept. `history`: the evaluations so far (a resumed run
  continues from their best)."""

  DIRECTORY = "best_checkpoint"

  def __init__(self, workdir: str, history):
    self._ckpt = checkpointing.Checkpointer(os.path.join(workdir, self.DIRECTORY), 1)
    errors = [h["validation_error"] for h in history if "validation_error" in h]
    self.best = min(errors) if errors else float("inf")

  def offer(self, state, result) -> bool:
    """Saves `state` if its evaluation `result` has the lowest validation error so far."""
    if result["validation_error"] >= self.best:
      return False
    self.best = result["validation_error"]
    self._ckpt.save(state)
    return True

  def close(self) -> None:
    self._ckpt.close()


def _check_last_batch(config, dataset, par) -> None:
  """The partial last training batch must shard over the devices too; its other shape costs a
  second compilation of the training step, which start-up says (padding it would change the
  BatchNorm batch statistics of that step, so it is not padded)."""
  last = dataset.last_batch_size(config.data.batch_size, config.data.drop_remainder)
  if last:
    LOG.info("the last training batch of each epoch holds %d examples, not %d: the training "
             "step compiles a second time for that shape (data.drop_remainder=True avoids it)",
             last, config.data.batch_size)
  if last % par.num_shards:
    raise config_validation.ConfigError(
        f"the partial last training batch of each epoch has {last} examples (of "
        f"{dataset.num_train} with config.data.batch_size={config.data.batch_size}), which "
        f"does not split over {par.num_shards} devices; set config.data.drop_remainder=True, or "
        "a batch size or data.train_subset that leaves a multiple of the device count")


def _loop(config, plan, dataset, state, train_step, learning_rate, guard, evaluate_fn, writer,
          ckpt, best, stop, history, history_path, steps_per_epoch, par):
  """The epoch loop from `state.step` on; returns (evaluation history, final state).

  learning_rate(k) -> step k's "lr", added to its metrics (`step_learning_rate`); evaluate_fn(
  state, epoch) -> one evaluation (`evaluation.evaluate_both`); best: the `BestCheckpoint` when
  the run holds a validation split, else None. Metrics are written under their public names
  (`metric_names`)."""
  step = start = int(state.step)
  total_steps = steps_per_epoch * config.num_epochs
  t_log, imgs_since_log, pending = time.time(), 0, []
  t_run = time.time()
  if start < total_steps:
    LOG.info("compiling the training step (its first call)")
  for epoch in range(start // steps_per_epoch, config.num_epochs):
    batches = par.prefetch(dataset.train_batches(epoch, step % steps_per_epoch,
                                                 config.data.batch_size,
                                                 config.data.drop_remainder))
    for batch in batches:
      state, metrics = guard.step(train_step, state, batch)
      metrics["lr"] = learning_rate(step)
      step += 1
      imgs_since_log += batch["label"].shape[0]  # a global array: the global batch
      pending.append((step, metrics))
      log_now = step % config.log_every_steps == 0 or step % steps_per_epoch == 0
      save_now = bool(config.checkpoint_every_steps) and step % config.checkpoint_every_steps == 0
      stop_now = stop.requested(sync_point=log_now or save_now)
      if log_now or stop_now:
        rows = guard.review(pending, ckpt.latest_step())
        mean_metrics = metric_names.public(
            plan, {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "finite"})
        if guard.mode == "skip":
          mean_metrics["skipped_steps"] = guard.window_skipped
          mean_metrics["skipped_steps_total"] = guard.skipped
        now = time.time()
        mean_metrics["images_per_sec"] = imgs_since_log / max(now - t_log, 1e-9)
        mean_metrics["epoch"] = step / steps_per_epoch
        mean_metrics.update(memory.peak_memory_record())
        writer.write_scalars(step, mean_metrics)
        guard.enforce_budget()  # after the record, so metrics.jsonl holds the count
        rate = (step - start) / max(now - t_run, 1e-9)
        LOG.info("epoch %d/%d step %d/%d | loss %.4f | lr %.4g | %.1f img/s | ETA %s%s",
                 epoch + 1, config.num_epochs, step, total_steps,
                 mean_metrics[metric_names.TRAIN_LOSS], mean_metrics["lr"],
                 mean_metrics["images_per_sec"],
                 format_eta((total_steps - step) / max(rate, 1e-9)),
                 f" | {guard.skipped} steps skipped" if guard.skipped else "")
        t_log, imgs_since_log, pending = now, 0, []
      if save_now or stop_now:
        guard.check(pending, ckpt.latest_step())  # never checkpoint a diverged state
        ckpt.save(state)
      if stop_now:
        raise preemption.Preempted(step, stop.signal_name)
    epoch_done = epoch + 1
    if epoch_done % config.eval_every_epochs == 0 or epoch_done == config.num_epochs:
      result = evaluate_fn(state, epoch)
      writer.write_scalars(step, metric_names.eval_scalars(result))
      _log_evaluation(epoch_done, result)
      history.append({"epoch": epoch_done, "step": step, **result})
      if jax.process_index() == 0:
        run_log.write_json_atomic(history_path, history)
      if best is not None and best.offer(state, result):
        LOG.info("epoch %d: best validation error so far (%.2f%%): kept in %s/", epoch_done,
                 result["validation_error"], BestCheckpoint.DIRECTORY)
    ckpt.save(state)
    if stop.requested(sync_point=True):
      raise preemption.Preempted(step, stop.signal_name)
  return history, state


def _log_evaluation(epoch: int, result: dict) -> None:
  """The evaluation's line: test error (both kinds of BN statistics when measured), the
  validation error when the run holds a validation split, and the local heads' accuracies."""
  if "test_error" + REESTIMATED in result:
    line = (f"epoch {epoch}: test error {result['test_error']:.2f}% with running BN statistics, "
            f"{result['test_error' + REESTIMATED]:.2f}% with statistics re-estimated on "
            f"{result['bn_reestimate_batches']} training batches "
            f"({result['bn_reestimate_seconds']:.1f} s)")
  else:
    line = (f"epoch {epoch}: test accuracy {result['test_accuracy']:.4f} "
            f"(error {result['test_error']:.2f}%)")
  if "validation_error" in result:
    line += f"; validation error {result['validation_error']:.2f}%"
  heads = result.get("local_test_accuracy")
  if heads:
    line += "; local heads' test accuracy " + " ".join(f"{k} {v:.3f}" for k, v in heads.items())
  LOG.info("%s", line)


def _min_with_epoch(history, key):
  """(min of h[key], epoch of its first occurrence) over the entries that have key."""
  pairs = [(h[key], h["epoch"]) for h in history if key in h]
  return min(pairs, key=lambda p: p[0]) if pairs else (None, None)


def _round(x, digits: int = 2):
  return None if x is None else round(float(x), digits)


def summarise(config, plan, history, params=None, wall_time_s: float | None = None,
              mock_examples: int = 0) -> dict:
  """The run's summary.json: what ran (method label = base + plugin, executor, dataset, mock
  data, model, split, modules, parameter counts), how long, with which software (`run_info`),
  and the final and best test error (%, 2 decimals) over the evaluations, with each kind of BN
  statistics present, and the epoch of the best. With a validation split it also gives the
  evaluation of lowest validation error (its epoch, step and checkpoint) and the test error
  there: the best test error is chosen on the test split, so only the latter is an unbiased
  estimate."""
  bp = config.method.name == "bp"
  summary = {
      "method": run_info.method_label(config), "base_method": config.method.name,
      "plugin": config.method.get("plugin", "none") or "none", "executor": config.executor,
      "dataset": config.data.name, **({"mock": True, "mock_examples": mock_examples}
                                      if mock_examples else {}),
      "model": f"{config.model.arch}{config.model.depth}",
      "split": "none" if bp else config.split.preset,
      "num_modules": plan.num_modules, "epochs": history[-1]["epoch"] if history else 0,
      "seed": config.seed,
  }
  if params is not None:
    summary.update(run_info.parameter_counts(params))
  summary["wall_time_s"] = _round(wall_time_s, 1)
  if history and "skipped_steps" in history[-1] and config.get("on_nonfinite") == "skip":
    summary["skipped_steps"] = history[-1]["skipped_steps"]
  for suffix in ("", REESTIMATED):
    errors = [h[f"test_error{suffix}"] for h in history if f"test_error{suffix}" in h]
    if errors or not suffix:
      best, best_epoch = _min_with_epoch(history, f"test_error{suffix}")
      summary[f"final_test_error{suffix}"] = _round(errors[-1] if errors else None)
      summary[f"best_test_error{suffix}"] = _round(best)
      summary[f"best_epoch{suffix}"] = best_epoch
  validated = [h for h in history if "validation_error" in h]
  if validated:
    best = min(validated, key=lambda h: h["validation_error"])
    summary.update(
        validation_size=config.data.validation_size,
        best_validation_error=_round(best["validation_error"]),
        best_validation_epoch=best["epoch"], best_validation_step=best["step"],
        test_error_at_best_validation=_round(best["test_error"]),
        best_checkpoint=os.path.join(BestCheckpoint.DIRECTORY, str(best["step"])))
  summary.update(run_info.software())
  return summary
