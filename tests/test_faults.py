"""Fault injection: preemption, SIGKILL while checkpointing, divergence, unreadable checkpoints,
corrupt images; and same config + seed = same losses. Runs real `launch.py` processes."""
import glob
import json
import logging
import os
import random
import re
import shutil
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import fashion_mnist_quickstart
from jax_local import (checkpointing, config_validation, divergence, experiment, preemption,
                       run_log, workdir_lock)
from jax_local.data import input_pipeline
from jax_local.train_state import TrainState, init_state
from tests import fault_helpers as fh
from tests.xla_flags import xla_flags

TOTAL = fh.STEPS_PER_EPOCH * fh.EPOCHS


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  return fh.env_with_cache(tmp_path_factory.mktemp("xla_cache"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, fashion_mnist, env):
  """The runs that need no interaction, overlapped to save time: "ref" (uninterrupted), "twin"
  (the same config, started once "ref" has compiled so it reuses the compilations), "nan"
  (optim.lr=1e30, checkpoint every step), "skip" (the same with on_nonfinite=skip, started once
  "nan" has compiled the same train step) and "second" (the command of "ref" on its workdir,
  launched while "ref" trains: "ref" is paused with SIGSTOP, still holding its lock, until
  "second" has ended). Returns {name: finished Run}."""
  root = tmp_path_factory.mktemp("runs")
  ref = fh.Run(root / "ref", env)
  nan = fh.Run(root / "nan", env, "--config.optim.lr=1e30",
               "--config.checkpoint_every_steps=1")
  ref.wait_for(lambda: fh.losses(ref.workdir))
  twin = fh.Run(root / "twin", env)
  ref.proc.send_signal(signal.SIGSTOP)
  try:
    second = fh.Run(root / "ref", env)
    second.wait()
  finally:
    ref.proc.send_signal(signal.SIGCONT)
  nan.wait_for(lambda: fh.losses(nan.workdir))
  skip = fh.Run(root / "skip", env, "--config.optim.lr=1e30",
                "--config.on_nonfinite=skip")
  for run in (ref, twin, nan, skip):
    run.wait()
  return {"ref": ref, "twin": twin, "nan": nan, "skip": skip, "second": second}


@pytest.fixture(scope="module")
def reference(runs):
  """The uninterrupted run's workdir."""
  assert runs["ref"].proc.returncode == 0, runs["ref"].output[-3000:]
  return runs["ref"].workdir


class _Capture(logging.Handler):
  def __init__(self):
    super().__init__(logging.WARNING)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@pytest.fixture
def warnings_of_jax_local():
  handler = _Capture()
  run_log.LOG.addHandler(handler)
  yield handler.messages
  run_log.LOG.removeHandler(handler)


def _abstract_state(fashion_mnist, num_classes=10):
  """The TrainState shapes the TINY quickstart run builds (for data of `num_classes`)."""
  d = fashion_mnist
  config = fashion_mnist_quickstart.get_config("greedy")
  config.data.batch_size, config.data.train_subset = 32, 512
  config.num_epochs, config.data.num_classes = fh.EPOCHS, num_classes
  dataset = input_pipeline.Dataset(d.name, (d.train_images[:512], d.train_labels[:512]),
                                   (d.test_images, d.test_labels), num_classes, d.mean, d.std, 0)
  exp = experiment.build(config, dataset)
  plan, tx = exp.plan, exp.tx
  return jax.eval_shape(lambda: init_state(plan, tx, jax.random.PRNGKey(0), dataset.image_shape))


def test_same_config_and_seed_give_same_losses(runs, reference):
  twin = runs["twin"]
  assert twin.proc.returncode == 0, twin.output[-3000:]
  assert sorted(fh.losses(reference)) == list(range(1, TOTAL + 1))
  assert fh.losses(twin.workdir) == fh.losses(reference)  # exactly
  assert fh.results(twin.workdir) == fh.results(reference)


def test_a_second_launch_on_a_live_workdir_is_refused_and_the_first_finishes(runs, reference):
  second = runs["second"]
  assert second.proc.returncode == workdir_lock.EXIT_LOCKED, second.output[-3000:]
  (line,) = [l for l in second.output.splitlines() if "error" in l.lower()]
  assert re.search(rf"workdir {re.escape(reference)} is in use by a running job \(pid "
                   rf"{runs['ref'].proc.pid} on ", line), line
  with open(f"{reference}/metrics.jsonl") as f:  # the first run's records alone, in order
    train_steps = [r["step"] for r in map(json.loads, f) if "train/loss" in r]
  assert train_steps == list(range(1, TOTAL + 1))
  assert len(glob.glob(f"{reference}/events.out.tfevents.*")) == 1
  assert not os.path.exists(f"{reference}/{workdir_lock.LOCK_FILE}")  # released at the end


def test_skip_mode_fails_once_more_steps_are_skipped_than_allowed(runs):
  run = runs["skip"]
  assert run.proc.returncode == divergence.EXIT_TOO_MANY_SKIPPED, run.output[-3000:]
  match = re.search(r"on_nonfinite=skip skipped 1 steps by step (\d+), more than the 0.32 that "
                    r"max_skipped_fraction allows", run.output)
  assert match, run.output[-3000:]
  assert not os.path.exists(f"{run.workdir}/summary.json")
  with open(f"{run.workdir}/metrics.jsonl") as f:  # strict JSON
    rows = [json.loads(line, parse_constant=_reject) for line in f]
  assert rows[-1]["step"] == int(match.group(1))  # recorded before failing, with the counts
  assert (rows[-1]["skipped_steps"], rows[-1]["skipped_steps_total"]) == (1, 1)
  assert all(r["skipped_steps"] == 0 for r in rows[:-1])
  assert all(set(r.get("nonfinite", [])) == {k for k, v in r.items() if v is None} for r in rows)


def test_jsonl_metrics_are_strict_json_with_non_finite_values_flagged(tmp_path):
  writer = run_log.JsonlWriter(str(tmp_path / "metrics.jsonl"))
  writer.write_scalars(3, {"loss": float("nan"), "grad_norm": float("inf"), "lr": 0.1})
  writer.close()
  row = json.loads((tmp_path / "metrics.jsonl").read_text(), parse_constant=_reject)
  assert row == {"step": 3, "loss": None, "grad_norm": None, "lr": 0.1,
                 "nonfinite": ["grad_norm", "loss"]}


def _reject(token):
  raise ValueError(f"not strict JSON: {token}")


def test_sigterm_mid_epoch_checkpoints_exits_75_and_resumes_exactly(tmp_path, fashion_mnist, env,
                                                                    reference):
  workdir = tmp_path / "run"
  victim = fh.Run(workdir, env)
  victim.wait_for(lambda: fh.losses(workdir))  # step 1 is logged: training is under way
  victim.proc.send_signal(signal.SIGTERM)
  assert victim.wait() == 75, victim.output[-3000:]
  assert "stopped by SIGTERM after checkpointing step" in victim.output
  (stopped,) = fh.complete_checkpoints(workdir)  # only the preemption checkpoint
  assert 0 < stopped < fh.STEPS_PER_EPOCH, "not mid-epoch"
  assert max(fh.losses(workdir)) == stopped

  resumed = fh.Run(workdir, env, "--config.max_checkpoints_to_keep=4")
  assert resumed.wait() == 0, resumed.output[-3000:]
  assert f"resumed from step {stopped}" in resumed.output
  assert "max_checkpoints_to_keep: 3 -> 4" in resumed.output  # a changed config is reported
  assert os.path.exists(workdir / f"config.until_step{stopped}.json")
  assert fh.losses(workdir) == fh.losses(reference)
  assert fh.results(workdir) == fh.results(reference)


def test_sigkill_while_checkpointing_loses_nothing_complete(tmp_path, fashion_mnist, env,
                                                             reference):
  workdir, rng = tmp_path / "run", random.Random(0)
  every_step = "--config.checkpoint_every_steps=1"
  killed_mid_write = 0
  for _ in range(3):
    before = fh.complete_checkpoints(workdir)
    run = fh.Run(workdir, env, every_step)
    run.wait_for(lambda: max(fh.complete_checkpoints(workdir) or [0]) > max(before or [0]))
    run.wait_for(lambda: fh.writing_checkpoint(workdir))
    time.sleep(rng.uniform(0, 0.02))
    run.proc.send_signal(signal.SIGKILL)
    run.wait()
    killed_mid_write += fh.writing_checkpoint(workdir)  # its temporary directory is left over
    if before:  # resumed from the newest complete checkpoint, taking over the dead run's lock
      assert f"resumed from step {max(before)}" in run.output, run.output[-3000:]
      assert re.search(r"taking over \S+/run.lock: its owner \(pid \d+ on .*\) is no longer "
                       "running", run.output), run.output[-3000:]
    assert fh.complete_checkpoints(workdir), "no complete checkpoint after the kill"
  assert killed_mid_write, "no kill landed while a checkpoint was being written"

  # The newest complete checkpoint loses its data files: the last resume warns and falls back.
  complete = fh.complete_checkpoints(workdir)
  for f in glob.glob(f"{workdir}/checkpoints/{complete[-1]}/**/d/*", recursive=True):
    os.truncate(f, 3)
  final = fh.Run(workdir, env, every_step)
  assert final.wait() == 0, final.output[-3000:]
  assert re.search(rf"checkpoint .*/{complete[-1]} is unreadable", final.output), final.output
  assert f"resumed from step {complete[-2]}" in final.output
  assert fh.losses(workdir) == fh.losses(reference)
  assert fh.results(workdir) == fh.results(reference)
  # what the killed launches logged past the checkpoint each resume started from was dropped:
  # every step is recorded once, in metrics.jsonl and across the TensorBoard event files
  with open(f"{workdir}/metrics.jsonl") as f:
    assert [r["step"] for r in map(json.loads, f) if "train/loss" in r] == list(
        range(1, TOTAL + 1))
  from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
  steps = sorted(e.step for path in glob.glob(f"{workdir}/events.out.tfevents.*")
                 for e in EventFileLoader(path).Load()
                 if any(v.tag == "train/loss" for v in e.summary.value))
  assert steps == list(range(1, TOTAL + 1))


def test_nan_stops_with_step_term_lr_and_last_good_checkpoint_restores(runs, fashion_mnist):
  run = runs["nan"]
  assert run.proc.returncode == divergence.EXIT_DIVERGED, run.output[-3000:]
  match = re.search(r"Training diverged: non-finite (.*) at step (\d+); lr \d\.?\d*e\+(?:29|30)"
                    r".*the last good checkpoint is step (\d+)", run.output)  # LR: per-step cosine
  assert match, run.output[-3000:]
  what, step, good = match.group(1), int(match.group(2)), int(match.group(3))
  assert what.startswith(("loss of term m0", "gradient norm", "updated state")), what
  assert good == step - 1
  assert fh.complete_checkpoints(run.workdir) == list(range(max(1, good - 2), good + 1))
  ckpt = checkpointing.Checkpointer(f"{run.workdir}/checkpoints", 3)
  state = ckpt.restore(_abstract_state(fashion_mnist))
  ckpt.close()
  assert int(state.step) == good
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.params))


def test_truncated_checkpoint_is_skipped_with_warning(tmp_path, fashion_mnist, reference,
                                                      warnings_of_jax_local):
  ckpt_dir = tmp_path / "checkpoints"
  shutil.copytree(f"{reference}/checkpoints", ckpt_dir)
  assert fh.complete_checkpoints(tmp_path) == [fh.STEPS_PER_EPOCH, TOTAL]
  for f in glob.glob(f"{ckpt_dir}/{TOTAL}/**/*", recursive=True):
    if os.path.isfile(f):
      os.truncate(f, os.path.getsize(f) // 2)
  ckpt = checkpointing.Checkpointer(str(ckpt_dir), 3)
  state = ckpt.restore(_abstract_state(fashion_mnist))
  assert int(state.step) == fh.STEPS_PER_EPOCH
  assert any(f"{ckpt_dir}/{TOTAL} is unreadable" in m for m in warnings_of_jax_local)
  assert ckpt.all_steps() == [fh.STEPS_PER_EPOCH]  # moved aside: step TOTAL can be saved again
  assert glob.glob(f"{tmp_path}/unreadable_checkpoints/{TOTAL}-*")
  ckpt.close()


def test_model_shape_mismatch_names_parameter_and_shapes(tmp_path, fashion_mnist, reference):
  ckpt = checkpointing.Checkpointer(f"{reference}/checkpoints", 3)
  with pytest.raises(checkpointing.CheckpointMismatch) as err:
    ckpt.restore(_abstract_state(fashion_mnist, num_classes=12))
  ckpt.close()
  message = str(err.value)
  assert re.search(r"'params/\S+' has shape \([\d, ]*10,?\) in the checkpoint but "
                   r"\([\d, ]*12,?\) in the model", message), message


def test_config_diff_lists_changed_fields():
  old = {"seed": 0, "optim": {"lr": 0.1, "name": "sgd"}, "gone": 1}
  new = {"seed": 0, "optim": {"lr": 0.2, "name": "sgd"}, "added": [1, 2]}
  assert run_log.config_diff(old, new) == [
      "added: \"<absent>\" -> [1, 2]", "gone: 1 -> \"<absent>\"", "optim.lr: 0.1 -> 0.2"]


def _image_folder(root, corrupt):
  from PIL import Image
  rng = np.random.default_rng(0)
  for split in ("train", "test"):
    for c in ("cat", "dog"):
      os.makedirs(f"{root}/{split}/{c}")
      for i in range(3):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(
            f"{root}/{split}/{c}/{i}.jpg")
  good = open(f"{root}/train/cat/0.jpg", "rb").read()
  for name, data in corrupt.items():
    with open(f"{root}/{name}", "wb") as f:
      f.write(data(good))


def test_corrupt_jpeg_is_reported_by_path(tmp_path, warnings_of_jax_local):
  root = str(tmp_path / "folder")
  _image_folder(root, {"train/dog/truncated.jpg": lambda g: g[:len(g) // 2],
                       "test/cat/garbage.jpeg": lambda g: b"not an image"})
  config = fashion_mnist_quickstart.get_config().data
  config.name, config.folder_root, config.num_classes = "image_folder", root, 2
  with pytest.raises(ValueError) as err:
    input_pipeline.build_dataset(config, seed=0)
  assert f"{root}/train/dog/truncated.jpg" in str(err.value)
  assert "on_bad_image=skip" in str(err.value)
  config.on_bad_image = "skip"
  data = input_pipeline.build_dataset(config, seed=0)
  assert (data.num_train, data.num_test) == (6, 6)
  assert any(f"{root}/test/cat/garbage.jpeg" in m for m in warnings_of_jax_local)
  config.num_classes = 3  # wrong label count: fails before anything is decoded
  with pytest.raises(ValueError, match="has 2 classes but config.data.num_classes = 3"):
    input_pipeline.build_dataset(config, seed=0)


def _fake_state():
  """A TrainState of two parts (block "w", head "h"), the optimizer's count kept whole."""
  return TrainState(step=jnp.int32(0), params={"backbone": {"w": jnp.ones(3)},
                                                "heads": {"h": {"v": jnp.ones(2)}}},
                    batch_stats={"backbone": {"w": {}}, "heads": {"h": {}}},
                    opt_state={"count": jnp.int32(0)})


def _fake_train_step():
  """A donating step: w += batch, v += 1, count += 1; loss = sum(w) per term."""

  def step(state, batch):
    w = state.params["backbone"]["w"] + batch
    params = {"backbone": {"w": w}, "heads": {"h": {"v": state.params["heads"]["h"]["v"] + 1}}}
    loss = jnp.sum(w)
    metrics = {"loss": loss, "m0/loss": loss, "m1/loss": jnp.float32(1.0),
               "grad_norm": jnp.sum(jnp.abs(batch)), "lr": jnp.float32(0.5)}
    return state.replace(step=state.step + 1, params=params,
                         opt_state={"count": state.opt_state["count"] + 1}), metrics

  return jax.jit(step, donate_argnums=0)


def test_skip_mode_undoes_a_nonfinite_step_despite_donation():
  guard, train_step = divergence.Guard("skip"), _fake_train_step()
  state = _fake_state()
  pending = []
  for k, batch in enumerate([jnp.ones(3), jnp.full(3, jnp.nan), jnp.ones(3)]):
    state, metrics = guard.step(train_step, state, batch)
    pending.append((k + 1, metrics))
  np.testing.assert_array_equal(state.params["backbone"]["w"], [3.0, 3.0, 3.0])  # step 2: none
  np.testing.assert_array_equal(state.params["heads"]["h"]["v"], [3.0, 3.0])  # in any part
  assert (int(state.step), int(state.opt_state["count"])) == (3, 3)  # counters advance
  rows = guard.review(pending, last_checkpoint=None)
  assert [r["loss"] for r in rows] == [6.0, 9.0]
  assert (guard.skipped, guard.window_skipped) == (1, 1)
  guard.enforce_budget()  # no budget given: any number may be skipped
  tight = divergence.Guard("skip", max_skipped=0.5)
  tight.review(pending, last_checkpoint=None)
  with pytest.raises(divergence.TooManySkipped, match="skipped 1 steps by step 2, more than the "
                     "0.5 that max_skipped_fraction allows"):
    tight.enforce_budget()

  stop = divergence.Guard("stop")
  state, metrics = stop.step(train_step, _fake_state(), jnp.full(3, jnp.inf))
  with pytest.raises(divergence.Diverged, match=r"loss of term m0 = (inf|nan) at step 7; lr 0.5"
                     r".*last good checkpoint is step 6"):
    stop.check([(7, metrics)], last_checkpoint=6)


def test_state_check_finds_a_non_finite_leaf_in_any_part():
  """Finite loss and gradient norm, one non-finite optimizer-state leaf of one head: flagged;
  the parts rebuild the state exactly."""
  state = TrainState(step=jnp.int32(4),
                     params={"backbone": {"a": {"k": jnp.ones(2)}, "b": {"k": jnp.ones(2)}},
                             "heads": {"h": {"k": jnp.ones(2)}}},
                     batch_stats={"backbone": {"a": {"m": jnp.zeros(2)}, "b": {}},
                                  "heads": {"h": {}}},
                     opt_state={"backbone": {"a": {"t": jnp.ones(2)}, "b": {"t": jnp.ones(2)}},
                                "heads": {"h": {"t": jnp.array([1.0, jnp.nan])}}})
  metrics = {"loss": jnp.float32(1.0), "grad_norm": jnp.float32(1.0)}
  guard = divergence.Guard("stop")
  _, out = guard.step(lambda s, b: (s, metrics), state, None)
  assert not bool(out["finite"])
  parts = divergence.state_parts(state)
  assert set(parts) == {("backbone", "a"), ("backbone", "b"), ("heads", "h"), "rest"}
  assert jax.tree.structure(divergence._join(state, parts)) == jax.tree.structure(state)
  fixed = state.replace(opt_state={**state.opt_state, "heads": {"h": {"t": jnp.ones(2)}}})
  assert bool(guard.step(lambda s, b: (s, metrics), fixed, None)[1]["finite"])


def test_first_signal_requests_a_stop_second_interrupts():
  # Python's own SIGINT handler, also when pytest was started in the background (SIG_IGN)
  outer = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    with preemption.StopOnSignal() as stop:
      assert not stop.requested(sync_point=True)
      os.kill(os.getpid(), signal.SIGINT)
      assert stop.requested(sync_point=False) and stop.signal_name == "SIGINT"
      with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
  finally:
    signal.signal(signal.SIGINT, outer)


@pytest.mark.parametrize("field, value", [("on_nonfinite", "ignore"),
                                          ("data.on_bad_image", "drop")])
def test_new_fault_fields_are_validated(field, value):
  config = fashion_mnist_quickstart.get_config()
  section, _, leaf = field.rpartition(".")
  (config[section] if section else config)[leaf] = value
  with pytest.raises(config_validation.ConfigError, match=rf"config.{field}='{value}'.*skip"):
    config_validation.validate_config(config)


_TWO_PROCESSES = """
import os, signal, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(f"127.0.0.1:{sys.argv[2]}", num_processes=2, process_id=int(sys.argv[1]))
from jax_local import preemption
with preemption.StopOnSignal() as stop:
  if jax.process_index() == 1:
    os.kill(os.getpid(), signal.SIGTERM)
  print("agreed", stop.requested(sync_point=False), stop.requested(sync_point=True))
"""


def test_two_processes_agree_to_stop_at_a_sync_point():
  """Only process 1 is signalled; at a sync point both decide to stop (gloo on CPU)."""
  import socket
  import subprocess
  import sys
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  env = {**os.environ, "XLA_FLAGS": xla_flags(),
         "PYTHONPATH": os.pathsep.join([fh.ROOT, os.environ.get("PYTHONPATH", "")])}
  procs = [subprocess.Popen([sys.executable, "-c", _TWO_PROCESSES, str(i), str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=300)[0] for p in procs]
  for out in outs:  # not between sync points: processes must not act alone
    assert "agreed False True" in out, out[-2000:]
