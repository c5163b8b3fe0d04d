"""The pipelined executor on 2 emulated CPU devices (one per stage) gives the sequential
executor's update on the same micro-batches: sync = the mean gradient of the micro-batches and
the mean of their new BatchNorm statistics (ghost BatchNorm), one update; async = one sequential
step per micro-batch. Also: the placement of modules on stages, the config errors, and the loss
falling on real Fashion-MNIST in async mode.

Also: each stage's part of the schedule (`pipeline_schedule.process_schedule`) run on its own
gives the same step.

Tolerance as tests/test_sequential.py (same programs; the pipeline sums losses per stage first).
"""
import functools
import queue
from concurrent import futures

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from jax_local import config_validation, engine, optim, parallel, train
from jax_local.data import input_pipeline
from jax_local.models import layers
from jax_local.engine import fused, pipeline_schedule, pipelined, schedule, sequential, stages
from tests import helpers
from tests import test_plugins_routing as plugin_routing

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
TOL = dict(rtol=1e-5, atol=5e-6)

pytestmark = pytest.mark.multi_device


def _allclose(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, **TOL)


@jax.jit
def _copy(tree):
  """A copy of `tree` in new buffers (steps donate their state), as one program."""
  return jax.tree.map(jnp.copy, tree)


def _halves(batch, count):
  rows = batch["label"].shape[0] // count
  return [jax.tree.map(lambda x: x[m * rows:(m + 1) * rows], batch) for m in range(count)]


def _setup(base, plugin="none"):
  if plugin == "none":
    config = helpers.tiny_config(base, preset="blocks_stem" if base == "auglocal" else
                                 "uniform_k3")
    common.set_selected(config.method, auglocal=dict(aux_depth=1))
    plan, tx, state = helpers.tiny_plan_and_state(config, normalisation=(MEAN, STD))
  else:
    config = plugin_routing.plugin_config(base, plugin)
    plan, tx, state = plugin_routing.build(config, normalisation=(MEAN, STD))
  return plan, tx, state


def _sync_reference(plan, tx, state, batch, count):
  """The sequential executor's gradients and new statistics on each micro-batch, averaged, then
  the update (`fused.apply_gradients`)."""
  seq = sequential.SequentialStep(plan, tx)
  pieces = [seq.gradients(_copy(state), jax.device_put(b)) for b in _halves(batch, count)]
  mean = jax.jit(lambda trees: jax.tree.map(lambda *xs: sum(xs[1:], xs[0]) / len(xs), *trees))
  grads, new_stats = mean([g for g, _ in pieces]), mean([s for _, s in pieces])
  start = next(k for k, c in enumerate(seq.schedule.calls)
               if isinstance(c.program, schedule.UpdateSpec))
  loss = sum(v for b in _halves(batch, count)
             for n, v in seq.run(_copy(state), jax.device_put(b), stop=start).items()
             if n.startswith("loss/")) / count
  update = jax.jit(functools.partial(fused.apply_gradients, plan, tx))
  return update(_copy(state), grads, new_stats, {"loss": loss})


def _check_sync(plan, tx, state, boundaries, count):
  batch = helpers.random_batch()
  step = pipelined.PipelinedStep(plan, tx, len(boundaries) + 1, boundaries, count, "sync")
  new, metrics = step(_copy(state), batch)
  want, want_metrics = _sync_reference(plan, tx, state, batch, count)
  _allclose(new, want)
  for key in ("loss", "grad_norm"):
    np.testing.assert_allclose(metrics[key], want_metrics[key], **TOL)
  assert step.updates_per_step == 1   # the learning rate the trainer logs: one update
  # every part's state lives on its stage's device
  stage = stages.stage_of(boundaries, plan.num_modules)
  devices = jax.devices()
  for c in step.schedule.calls:
    if isinstance(c.program, schedule.UpdateSpec):
      top, part = c.program.part
      for x in jax.tree.leaves(new.params[top][part]):
        assert x.devices() == {devices[stage[c.module]]}
  return step


def test_sync_one_microbatch_equals_sequential():
  plan, tx, state = _setup("dgl")
  batch = helpers.random_batch()
  step = pipelined.PipelinedStep(plan, tx, 2, (1,), 1, "sync")
  new, metrics = step(_copy(state), batch)
  want, want_metrics = sequential.SequentialStep(plan, tx)(_copy(state), batch)
  _allclose(new, want)
  assert sorted(metrics) == sorted(want_metrics)
  _allclose(metrics, {k: want_metrics[k] for k in metrics})
  # placed on a 2-device mesh as the trainer does: the same step, the state given back
  # replicated over the mesh's devices
  par = parallel.Parallel(parallel.make_mesh(jax.devices()[:2]), layers.Policy(None, 1))
  placed_state, placed_metrics = par.train_step(step)(par.put_replicated(_copy(state)), batch)
  assert par.is_replicated(placed_state) and placed_state.params["heads"]["m0"]["Dense_0"]["Dense_0"][
      "kernel"].sharding.device_set == set(jax.devices()[:2])
  _allclose(placed_state, want)
  np.testing.assert_allclose(placed_metrics["loss"], want_metrics["loss"], **TOL)


@pytest.mark.parametrize("base", ["infopro", "predsim", "auglocal"])
def test_sync_microbatches_equal_accumulated_sequential(base):
  """The head kinds DGL's (also Greedy SL's) do not have: decoder + classifier, similarity
  matching, copies of later blocks. DGL runs M=2 with a plug-in below, M=1 above, async after."""
  plan, tx, state = _setup(base)
  _check_sync(plan, tx, state, (1,), 2)


@pytest.mark.parametrize("base,plugin", [("dgl", "hpff"), ("predsim", "man")])
def test_sync_plugins_across_stages(base, plugin):
  """HiLo windows {j, j+1} and MAN's copies of the next module's block: every cut of these plans
  crosses a term or a copy; the cascade cotangent goes back to stage 0 and the source block's
  parameters forward, and the update is still the sequential executor's."""
  plan, tx, state = _setup(base, plugin)
  assert stages.clean_cuts(plan) == ()
  step = _check_sync(plan, tx, state, (2,), 2)
  sends = [c.label for c in step.schedule.calls
           if isinstance(c.program, pipeline_schedule.TransferSpec)]
  if plugin == "hpff":
    assert any(s.startswith("send ct/") and s.endswith("to stage 0") for s in sends)
  else:
    assert any(s.startswith("send params/backbone/") for s in sends)


@pytest.mark.parametrize("base,plugin,bounds,mode", [("dgl", "none", (1,), "sync"),
                                                     ("predsim", "man", (2,), "async")])
def test_process_schedules_make_the_pipelined_step(base, plugin, bounds, mode):
  """Each stage's `pipeline_schedule.process_schedule` run by a thread of its own with its own
  programs, as a process per stage runs it (benchmarks/pipeline_processes.py): a send puts its
  value on the reader's device and on a queue per direction, a receive takes it from there.
  Together the stages give the pipelined step's state and metrics; MAN's cut sends the source
  block's parameters from stage 1 back to stage 0 after every micro-batch (async)."""
  plan, tx, state = _setup(base, plugin)
  batch = helpers.random_batch()
  step = pipelined.PipelinedStep(plan, tx, 2, bounds, 2, mode)
  want, want_metrics = step(_copy(state), batch)
  stage = stages.stage_of(bounds, plan.num_modules)
  procs = [pipeline_schedule.process_schedule(step.schedule, stage, s) for s in range(2)]
  own = lambda calls: [c for c in calls if not isinstance(c.program, (
      pipeline_schedule.SendSpec, pipeline_schedule.ReceiveSpec, pipeline_schedule.TransferSpec))]
  assert sorted(c.label for p in procs for c in own(p.calls)) == sorted(
      c.label for c in own(step.schedule.calls))
  sends = {s: [c.label for c in p.calls if isinstance(c.program, pipeline_schedule.SendSpec)]
           for s, p in enumerate(procs)}
  receives = {s: [c.label for c in p.calls if isinstance(c.program, pipeline_schedule.ReceiveSpec)]
              for s, p in enumerate(procs)}
  assert sends[0] == receives[1] and sends[1] == receives[0] and sends[0]
  assert bool(sends[1]) == (plugin == "man")
  devices = jax.devices()[:2]
  queues = {(0, 1): queue.Queue(), (1, 0): queue.Queue()}

  def run(s):
    table = pipelined.StagePrograms(
        plan, tx, None, send=lambda to, x: queues[s, to].put(jax.device_put(x, devices[to])),
        receive=lambda source, batched: queues[source, s].get(timeout=120))
    env = sequential.step_inputs(procs[s], jax.device_put(_copy(state), devices[s]),
                                 jax.device_put(batch, devices[s]))
    sequential.run_calls(procs[s].calls, procs[s].dead_after(), table, env, sequential.execute)
    return sequential.step_results(procs[s], state, env)

  with futures.ThreadPoolExecutor(2) as pool:
    (new0, metrics0), (new1, metrics1) = pool.map(run, range(2))
  merged = {f: {top: {**getattr(new0, f)[top], **getattr(new1, f)[top]}
                for top in ("backbone", "heads")} for f in ("params", "opt_state", "batch_stats")}
  _allclose((merged, new1.step, {**metrics0, **metrics1}),
            ({f: getattr(want, f) for f in merged}, want.step, want_metrics))


@pytest.mark.parametrize("bn_stats", ["global", "per_device"])
def test_sync_data_parallel_stages(bn_stats):
  """A ('stage', 'data') mesh of 2x2 devices: each micro-batch sharded over its stage's two
  `data` devices, each part replicated on them, programs one at a time (XLA:CPU, docs/design.md
  §8). The update is the 2x1 mesh's, whose stage devices hold whole micro-batches, under the
  BatchNorm rule of §3.3: `global` normalises each micro-batch as a whole; `per_device` each
  device's half of it, which on the 2x1 mesh is ghost BatchNorm with 2 groups. The trainer's
  layer policy gives a stage's `data` devices as the groups, not every device of the run."""
  plan, tx, state = _setup("dgl")
  batch = helpers.random_batch()
  config = _config(stages=2)
  config.model.bn_stats = bn_stats
  par = parallel.Parallel.from_config(config, parallel.make_mesh(jax.devices()[:4]))
  assert par.policy.bn_groups == {"global": 1, "per_device": 2}[bn_stats]
  with layers.policy(par.policy):
    want, want_metrics = pipelined.PipelinedStep(plan, tx, 2, (1,), 2, "sync")(
        _copy(state), batch)
    step = pipelined.PipelinedStep(plan, tx, 2, (1,), 2, "sync")
    mesh = pipelined.make_mesh(2, jax.devices()[:4])
    new, metrics = step.run(_copy(state), batch, mesh, sequential.one_at_a_time)
  _allclose(new, want)
  for key in ("loss", "grad_norm"):
    np.testing.assert_allclose(metrics[key], want_metrics[key], **TOL)
  stage = stages.stage_of((1,), plan.num_modules)
  for c in step.schedule.calls:
    if isinstance(c.program, schedule.UpdateSpec):
      top, part = c.program.part
      for x in jax.tree.leaves(new.params[top][part]):
        assert x.sharding.device_set == set(mesh.devices[stage[c.module]])
        assert x.sharding.is_fully_replicated


def test_async_equals_sequential_steps_on_microbatches():
  """Each stage updates after every micro-batch: the sequential executor run once per
  micro-batch gives the same state, on 2 stages and on 1 (where the pipeline is that loop)."""
  plan, tx, state = _setup("dgl")
  batch = helpers.random_batch()
  seq = sequential.SequentialStep(plan, tx)
  want, losses = _copy(state), []
  for half in _halves(batch, 2):
    want, m = seq(want, half)
    losses.append(m["loss"])
  for bounds in [(1,), ()]:
    step = pipelined.PipelinedStep(plan, tx, len(bounds) + 1, bounds, 2, "async")
    new, metrics = step(_copy(state), batch)
    _allclose((new.params, new.opt_state, new.batch_stats),
              (want.params, want.opt_state, want.batch_stats))
    assert int(new.step) == 1   # one step of the trainer: a global batch
    assert step.updates_per_step == 2   # of two updates, which the LR schedule counts
    np.testing.assert_allclose(metrics["loss"], np.mean(losses), **TOL)


def test_async_loss_falls_on_fashion_mnist(fashion_mnist):
  full = fashion_mnist
  data = input_pipeline.Dataset(
      "fashion_mnist", (full.train_images[:2048], full.train_labels[:2048]),
      (full.test_images[:8], full.test_labels[:8]), 10, full.mean, full.std, seed=0)
  config = helpers.tiny_config("dgl", depth=8, preset="uniform_k3")
  config.data.num_classes = 10
  config.optim.lr, config.optim.schedule = 0.05, "constant"
  plan, tx, state = helpers.tiny_plan_and_state(config, data.image_shape,
                                                normalisation=(data.mean, data.std))
  step = pipelined.PipelinedStep(plan, tx, 2, None, 2, "async")
  losses = []
  for batch in data.train_batches(0, 0, 64, drop_remainder=True):
    state, metrics = step(state, batch)
    losses.append(float(metrics["loss"]))
    if len(losses) == 12:
      break
  assert step.boundaries in {(1,), (2,)}
  assert np.isfinite(losses).all()
  assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3]), losses


def test_trainer_logs_the_learning_rate_of_a_steps_first_update():
  """An async step makes M updates and the schedule counts updates: the trainer's "lr" of step k
  is the schedule at update k·M (a per-step cosine, so the rates differ), sync's at update k."""
  config = helpers.tiny_config("dgl")
  config.optim.schedule, config.optim.schedule_unit = "cosine", "step"
  schedule = optim.make_schedule(config.optim, 1, 10)
  plan, tx, _ = helpers.tiny_plan_and_state(config)
  for mode, updates in (("sync", 1), ("async", 2)):
    step = pipelined.make_train_step(plan, tx, {"mode": mode, "microbatches": 2})
    lr = train.step_learning_rate(schedule, step.updates_per_step)
    np.testing.assert_allclose([lr(k) for k in range(3)],
                               [schedule(k * updates) for k in range(3)], rtol=1e-6)
  # the count the schedule's horizon is built with (before the step exists) is the step's own
  for pipeline in ({"mode": "sync", "microbatches": 2}, {"mode": "async", "microbatches": 2},
                   {"mode": "async"}, None):
    assert engine.updates_per_step("pipelined", pipeline) == \
        pipelined.make_train_step(plan, tx, pipeline).updates_per_step
  assert engine.updates_per_step("pipelined", {"mode": "async"}) == pipelined.DEFAULTS[
      "microbatches"] > 1
  assert engine.updates_per_step("sequential", {"mode": "async"}) == 1


def test_balanced_boundaries_from_costs():
  assert stages.balanced([1, 1, 1, 1, 4], 2, (1, 2, 3, 4)) == (4,)
  assert stages.balanced([1, 1, 1, 1, 4], 2, (1, 2)) == (2,)
  assert stages.balanced([4, 1, 1, 1, 1, 4], 3, (1, 2, 3, 4, 5)) == (1, 5)
  # FLOPs per module from XLA's cost analysis: the balanced cut of a real plan
  plan, tx, state = _setup("dgl")
  seq = sequential.SequentialStep(plan, tx)
  costs = stages.module_costs(seq, state, helpers.random_batch())
  assert len(costs) == plan.num_modules and min(costs) > 0
  assert stages.balanced(costs, 2, (1, 2)) == (min(
      (1, 2), key=lambda b: max(sum(costs[:b]), sum(costs[b:]))),)


def _config(**pipeline):
  c = helpers.tiny_config("dgl")
  c.executor = "pipelined"
  c.data.batch_size = c.data.eval_batch_size = 8
  c.pipeline.update(pipeline)
  return c


@pytest.mark.parametrize("fields,message", [
    (dict(stages=4), "config.pipeline.stages=4 exceeds the 3 modules"),
    (dict(stages=3), "config.pipeline.stages=3 exceeds the 2 devices present"),
    (dict(microbatches=3), "config.pipeline.microbatches=3 does not divide"),
    (dict(mode="bulk"), "config.pipeline.mode='bulk'"),
    (dict(boundaries=(1, 2)), "config.pipeline.boundaries=(1, 2) gives 3 stages"),
    (dict(boundaries=(3,)), "must be ascending module indices in 1..2"),
])
def test_config_errors(fields, message):
  with pytest.raises(config_validation.ConfigError, match=message.replace("(", r"\(").replace(
      ")", r"\)")):
    config_validation.validate_config(_config(**fields), num_devices=2)
  config_validation.validate_config(_config(), num_devices=2)
