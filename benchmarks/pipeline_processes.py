"""Images/s of the pipelined executor with one process per stage (S = 2), against the same
executor in one process on two emulated CPU devices and on one stage (docs/design.md §3.9).

  python benchmarks/pipeline_processes.py [--batch=128] [--steps=4] [--rounds=3]
      [--configs=cifar10_r32_k16_dgl] [--microbatches=8]
  python benchmarks/pipeline_processes.py --check   # tiny net: the two processes' state

XLA:CPU runs one compute thread per device in every process (`--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1`, set before JAX starts, as benchmarks/pipeline_throughput.py
pins them). This process has two emulated devices (`--xla_force_host_platform_device_count=2`)
and runs the one-process variants; each stage's process (started with `spawn`, which imports
this file as __mp_main__) has one device.

How the stage processes run the executor's own step: each builds the pipelined schedule
(`pipeline_schedule.build`, with the boundaries this process's executor chose by FLOPs) and runs
its stage's part of it (`pipeline_schedule.process_schedule`) with the sequential executor's
driver (`sequential.step_inputs`, `run_calls`, `step_results`) and the executor's programs
(`pipelined.StagePrograms`), from the same initial state and batch. A transfer becomes a send in
the process that holds the value and a receive in the one that reads it:
- send: the main thread hands the jax array to a sender thread and goes on dispatching; the
  thread waits for the value, copies it to the host (`jax.device_get`) and writes it, pickled,
  to an OS pipe (`multiprocessing` Connection, one per direction).
- receive: a receiver thread per pipe reads each value as it arrives and puts it on the
  process's device (`jax.device_put`); the main thread waits only when it needs a value that
  has not arrived. Both sides meet the transfers in the schedule's order, so the pipe's order is
  the reader's.
- a later call on the sender's stage that reads a value still being sent waits for its copy to
  the host (its program may donate the buffer: an EMA source's parameters before their update
  on a crossing cut); the clean cuts of the configs below send activations, micro-batches and
  loss sums, which their stage does not read again.
Like the executor, a process waits for the step before the previous one (its own metrics) to
finish, so at most two steps are in flight. Numerics are the executor's: the same programs on
the same values; `--check` compares the final state and metrics.

Output (Markdown): per config, images/s of the sequential executor, the pipelined executor sync
(M micro-batches, one update) and async (one update per micro-batch) with 2 processes, with 1
process on 2 emulated devices, and on 1 stage (1 device: the micro-batch effect without
overlap). After one warm-up step (compilation), `rounds` rounds in which each variant runs
`steps` steps without blocking between them, then blocks; variants interleave per round. A
2-process round is timed here from the command to both processes' replies. Images/s: the best
round's; ratios to the sequential executor and of 2 processes to 1 stage. Then, per stage
process of the best round, per step: the time its main thread waited for received values (its
device may be computing meanwhile: the main thread dispatches ahead), the values and bytes it
sent, its sender thread's time for the host copies and pipe writes after each value was ready,
and the process's CPU seconds (every thread) and cores kept busy (CPU seconds / the round's
wall seconds; one compute thread per device, so about 1 while its device never idles).

--check (tiny net unless --depth, --batch, --microbatches are given: depth 8, split preset
`uniform_k3`, batch 32, M = 4): 2 steps sync and async from one initial state; the parts each
stage process updated, gathered here, and its metrics equal the one-process executor's
(2 emulated devices, same boundaries) within rtol 1e-5, atol 5e-6. Prints PASS/FAIL and the
largest absolute difference.
"""
import os
import resource
import sys


def _xla_flags():
  """XLA_FLAGS must be set before JAX is imported: 2 emulated devices here, 1 in a stage
  process (this file imported as __mp_main__ by `spawn`), one compute thread per device."""
  devices = 1 if __name__ == "__mp_main__" else 2
  os.environ["XLA_FLAGS"] = (f"--xla_force_host_platform_device_count={devices} "
                             "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")


_xla_flags()

import multiprocessing  # noqa: E402
import queue  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from multiprocessing import connection  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

sys.path.insert(0, ".")
from benchmarks import timing  # noqa: E402
from configs import cifar  # noqa: E402
from jax_local import memory  # noqa: E402
from jax_local.engine import pipelined, sequential, stages  # noqa: E402
from jax_local.engine import pipeline_schedule as psched  # noqa: E402
from jax_local.engine import schedule as sched  # noqa: E402
from jax_local.train_state import init_state  # noqa: E402

flags.DEFINE_integer("batch", 128, "Global batch size (--check: 32 unless given).")
flags.DEFINE_integer("steps", 4, "Steps per timed round (dispatched without blocking).")
flags.DEFINE_integer("rounds", 3, "Timed rounds per variant (the best one counts).")
flags.DEFINE_integer("microbatches", 8, "M of the pipelined executor (--check: 4 unless given).")
flags.DEFINE_list("configs", ["cifar10_r32_k16_dgl"], "configs/cifar.py cell names (--check: "
                  "the first).")
flags.DEFINE_integer("depth", 0, "If > 0, overrides the depth and uses split preset `preset` "
                     "(tiny smoke runs; --check: 8 unless given).")
flags.DEFINE_string("preset", "uniform_k3", "Split preset with --depth.")
flags.DEFINE_bool("check", False, "Compare the 2-process state with the one-process executor's "
                  "after 2 steps, sync and async, instead of timing.")
FLAGS = flags.FLAGS

MODES = ("sync", "async")
TOL = dict(rtol=1e-5, atol=5e-6)
TIMEOUT_S = 1800   # a stage process that says nothing for this long has failed


def _setup(settings):
  """(memory.Setup, batch on the default device) of `settings` (a plain dict: a stage process
  has no parsed flags)."""
  config = cifar.get_config(settings["config"])
  n = settings["batch"]
  config.data.batch_size = config.data.eval_batch_size = n
  if settings["depth"]:
    config.model.depth, config.split.preset = settings["depth"], settings["preset"]
  s = memory.setup(config)
  batch = {"image": jax.random.normal(jax.random.PRNGKey(1), (n, *s.image_shape)),
           "label": jnp.arange(n, dtype=jnp.int32) % config.data.num_classes}
  return s, batch


def _state(s):
  return init_state(s.plan, s.tx, jax.random.PRNGKey(0), s.image_shape)


# ------------------------------------------------------------------------------ stage process


class Link:
  """A stage process's ends of its pipes ({peer stage: Connection}, one pipe per direction):
  a sender thread per outgoing pipe and a receiver thread per incoming one (module docstring).
  Counts what one run sends and how long the main thread waits."""

  def __init__(self, outgoing, incoming, device):
    self._device = device
    self._out = {peer: queue.Queue() for peer in outgoing}
    self._in = {peer: queue.Queue() for peer in incoming}
    self._lock = threading.Lock()
    self.reset()
    for peer, conn in outgoing.items():
      threading.Thread(target=self._send_loop, args=(conn, self._out[peer]), daemon=True).start()
    for peer, conn in incoming.items():
      threading.Thread(target=self._receive_loop, args=(conn, self._in[peer]),
                       daemon=True).start()

  def reset(self):
    self.stats = {"receive_wait": 0.0, "guard_wait": 0.0, "sent": 0, "bytes": 0, "send_busy": 0.0}

  def send(self, stage, value) -> threading.Event:
    """Hands `value` to the sender thread of stage `stage`'s pipe; the event: sent."""
    done = threading.Event()
    self._out[stage].put((value, done))
    return done

  def receive(self, source, batched):
    """The next value from stage `source`, on this process's one device (`batched`: no
    `data` axis to shard along here)."""
    del batched
    t = time.perf_counter()
    value = self._in[source].get(timeout=TIMEOUT_S)
    self.stats["receive_wait"] += time.perf_counter() - t
    return value

  def _send_loop(self, conn, items):
    while True:
      value, done = items.get()
      jax.block_until_ready(value)
      t = time.perf_counter()
      host = jax.device_get(value)
      conn.send(host)
      with self._lock:
        self.stats["send_busy"] += time.perf_counter() - t
        self.stats["sent"] += 1
        self.stats["bytes"] += sum(x.nbytes for x in jax.tree.leaves(host))
      del value, host
      done.set()

  def _receive_loop(self, conn, items):
    while True:
      try:
        host = conn.recv()
      except EOFError:
        return
      items.put(jax.device_put(host, self._device))


class StageRunner:
  """Stage `s`'s part of the pipelined step (`pipeline_schedule.process_schedule`), its state
  (its own parts after the first step) on this process's device."""

  def __init__(self, s, setup, schedule, boundaries, link, state, batch):
    stage = stages.stage_of(boundaries, setup.plan.num_modules)
    self.proc = psched.process_schedule(schedule, stage, s)
    self._dead = self.proc.dead_after()
    self._table = pipelined.StagePrograms(setup.plan, setup.tx, None, link.send, link.receive)
    self._link, self.state, self._batch = link, state, batch
    self._sending: dict[str, threading.Event] = {}   # value name -> its send's event
    self._in_flight: list = []
    self.metrics = None

  def _call(self, c, fn, *args):
    """`sequential.execute`, after the sends of the values `c` reads (module docstring)."""
    if self._sending:
      for n in sched.names(c.args):
        if n in self._sending and not isinstance(c.program, psched.SendSpec):
          t = time.perf_counter()
          self._sending.pop(n).wait()
          self._link.stats["guard_wait"] += time.perf_counter() - t
    out = fn(*args)
    if isinstance(c.program, psched.SendSpec):
      self._sending[c.args[0]] = out
      return None
    for n in sched.names(c.outputs):   # a new value under that name: not the one being sent
      self._sending.pop(n, None)
    return out

  def step(self):
    env = sequential.step_inputs(self.proc, self.state, self._batch)
    sequential.run_calls(self.proc.calls, self._dead, self._table, env, self._call)
    self.state, self.metrics = sequential.step_results(self.proc, self.state, env)
    self._sending = {n: e for n, e in self._sending.items() if not e.is_set()}
    self._in_flight.append(self.metrics)
    if len(self._in_flight) > 2:
      jax.block_until_ready(self._in_flight.pop(0))

  def finish(self):
    """Blocks until this stage's steps are computed and its values sent."""
    jax.block_until_ready((self.state, self.metrics))
    for e in self._sending.values():
      e.wait()
    self._sending, self._in_flight = {}, []

  def parts(self):
    """This stage's parts of the state and its metrics, as NumPy."""
    fields = self.proc.results["state"]
    return jax.device_get(({f: getattr(self.state, f) for f in fields}, self.metrics))


def _cpu_seconds() -> float:
  """User + system CPU seconds of this process so far, every thread."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def stage_process(s, settings, control, outgoing, incoming):
  """Stage s's process: answers the commands on `control` (init, run, parts, stop)."""
  try:
    setup, batch = _setup(settings)
    link = Link(outgoing, incoming, jax.devices()[0])
    schedules = {mode: psched.build(setup.plan, settings["boundaries"], settings["microbatches"],
                                    mode) for mode in MODES}
    runners = {}
    while True:
      cmd, *args = control.recv()
      if cmd == "stop":
        control.send(("ok",))
        return
      if cmd == "init":   # a fresh initial state for mode args[0]
        (mode,) = args
        runners[mode] = StageRunner(s, setup, schedules[mode], settings["boundaries"], link,
                                    _state(setup), batch)
        control.send(("ok",))
      elif cmd == "run":  # args: mode, steps
        mode, steps = args
        link.reset()
        t, cpu = time.perf_counter(), _cpu_seconds()
        for _ in range(steps):
          runners[mode].step()
        runners[mode].finish()
        wall = time.perf_counter() - t
        control.send(("ok", wall, {**link.stats, "cpu": _cpu_seconds() - cpu, "wall": wall}))
      elif cmd == "parts":
        control.send(("ok", runners[args[0]].parts()))
  except Exception:   # noqa: BLE001 (the parent prints it)
    control.send(("error", f"stage {s}:\n{traceback.format_exc()}"))


# ------------------------------------------------------------------------------ this process


class StageProcesses:
  """The S = 2 stage processes of one config, mode by mode (`command`)."""

  def __init__(self, settings):
    ctx = multiprocessing.get_context("spawn")
    pipes = {(a, b): ctx.Pipe(duplex=False) for a in range(2) for b in range(2) if a != b}
    self.controls, self.procs = [], []
    for s in range(2):
      mine, theirs = ctx.Pipe()
      outgoing = {b: pipes[a, b][1] for a, b in pipes if a == s}
      incoming = {a: pipes[a, b][0] for a, b in pipes if b == s}
      p = ctx.Process(target=stage_process, args=(s, settings, theirs, outgoing, incoming),
                      daemon=True)
      p.start()
      theirs.close()
      self.controls.append(mine)
      self.procs.append(p)
    for r, w in pipes.values():
      r.close()
      w.close()

  def command(self, *cmd):
    """Sends `cmd` to both processes; their replies' payloads, once both answered."""
    for c in self.controls:
      c.send(cmd)
    replies = [None, None]
    while any(r is None for r in replies):
      ready = connection.wait(self.controls, timeout=TIMEOUT_S)
      if not ready:
        raise TimeoutError(f"no reply to {cmd[0]} in {TIMEOUT_S} s")
      for c in ready:
        reply = c.recv()
        if reply[0] == "error":
          raise RuntimeError(reply[1])
        replies[self.controls.index(c)] = reply[1:]
    return replies

  def close(self):
    for c, p in zip(self.controls, self.procs):
      if p.is_alive():
        try:
          c.send(("stop",))
        except OSError:
          pass
      p.join(timeout=30)
      if p.is_alive():
        p.terminate()
        p.join()


def _settings(name, boundaries):
  return {"config": name, "batch": FLAGS.batch, "depth": FLAGS.depth, "preset": FLAGS.preset,
          "microbatches": FLAGS.microbatches, "boundaries": tuple(boundaries)}


def _one_process(s, mode, stages_):
  return pipelined.PipelinedStep(s.plan, s.tx, stages_, None, FLAGS.microbatches, mode)


def _merge(parts):
  """The state fields and metrics of both stage processes ({field: ...}, metrics) as one."""
  fields, metrics = {}, {}
  for f_s, m_s in parts:
    metrics.update(m_s)
    for f, v in f_s.items():
      fields[f] = v if not isinstance(v, dict) else {
          top: {**fields.get(f, {}).get(top, {}), **parts_} for top, parts_ in v.items()}
  return fields, metrics


def check(name):
  """PASS/FAIL per mode: the 2-process state and metrics after 2 steps equal the one-process
  executor's. True if both pass."""
  s, batch = _setup(_settings(name, ()))
  d0 = jax.devices()[0]
  batch = jax.device_put(batch, d0)
  want, bounds = {}, None
  init = jax.device_get(_state(s).params)
  for mode in MODES:
    step = _one_process(s, mode, 2)
    state = jax.device_put(_state(s), d0)
    for _ in range(2):
      state, metrics = step(state, batch)
    fields = {f: getattr(state, f) for f in ("step", "params", "opt_state", "batch_stats")}
    want[mode], bounds = jax.device_get((fields, metrics)), step.boundaries
  procs = StageProcesses(_settings(name, bounds))
  ok = True
  try:
    for mode in MODES:
      procs.command("init", mode)
      procs.command("run", mode, 2)
      got = _merge([p[0] for p in procs.command("parts", mode)])
      assert jax.tree.structure(got) == jax.tree.structure(want[mode]), (
          jax.tree.structure(got), jax.tree.structure(want[mode]))
      pairs = list(zip(jax.tree.leaves(got), jax.tree.leaves(want[mode])))
      diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                 for a, b in pairs)
      close = all(np.allclose(a, b, **TOL) for a, b in pairs)
      ok &= close
      moved = max(float(np.max(np.abs(a - b))) for a, b in zip(
          jax.tree.leaves(got[0]["params"]), jax.tree.leaves(init)))
      print(f"{name} {mode}: {'PASS' if close else 'FAIL'}: {len(pairs)} arrays (state and "
            f"metrics), largest |difference| {diff:.3g} (rtol {TOL['rtol']}, atol "
            f"{TOL['atol']}); the parameters moved by up to {moved:.3g} from the initial "
            f"state; stages cut before module {bounds}")
  finally:
    procs.close()
  return ok


def throughput(name):
  """{variant: images/s}, the stage processes' counters of their best rounds, the boundaries
  and the number of modules of one config."""
  s, batch = _setup(_settings(name, ()))
  n, m = FLAGS.batch, FLAGS.microbatches
  d0 = jax.devices()[0]
  batch = jax.device_put(batch, d0)
  local = {"sequential": sequential.make_train_step(s.plan, s.tx)}
  for mode in MODES:
    local[f"pipelined {mode} M={m}, 1 process 2 devices"] = _one_process(s, mode, 2)
    local[f"pipelined {mode} M={m}, 1 stage"] = _one_process(s, mode, 1)
  states = {}
  for v, step in local.items():
    state = jax.device_put(_state(s), d0)
    states[v] = jax.block_until_ready(step(state, batch))[0]   # compiles
  bounds = local[f"pipelined sync M={m}, 1 process 2 devices"].boundaries
  if local[f"pipelined async M={m}, 1 process 2 devices"].boundaries != bounds:
    raise ValueError("sync and async balanced to different boundaries")
  procs = StageProcesses(_settings(name, bounds))
  remote = {f"pipelined {mode} M={m}, 2 processes": mode for mode in MODES}
  order = [f"pipelined {mode} M={m}, {where}" for mode in MODES
           for where in ("2 processes", "1 process 2 devices", "1 stage")] + ["sequential"]
  best = {v: float("inf") for v in order}
  counters = {}
  try:
    for mode in MODES:
      procs.command("init", mode)
      procs.command("run", mode, 1)   # compiles
    for _ in range(FLAGS.rounds):
      for v, mode in remote.items():
        t = time.perf_counter()
        replies = procs.command("run", mode, FLAGS.steps)
        elapsed = time.perf_counter() - t
        if elapsed < best[v]:
          best[v], counters[v] = elapsed, [r[1] for r in replies]
      for v, step in local.items():
        seconds, states[v] = timing.timed_steps(step, states[v], batch, FLAGS.steps)
        best[v] = min(best[v], seconds)
  finally:
    procs.close()
  return {v: n * FLAGS.steps / t for v, t in best.items()}, counters, bounds, s.plan.num_modules


def main(_):
  if FLAGS.check:
    for flag, tiny in (("batch", 32), ("microbatches", 4), ("depth", 8)):
      if not FLAGS[flag].present:
        FLAGS[flag].value = tiny
    ok = check(FLAGS.configs[0])
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)
  print(f"XLA_FLAGS={os.environ['XLA_FLAGS']} here, device count 1 in each stage process; "
        f"batch {FLAGS.batch}; best of {FLAGS.rounds} rounds of {FLAGS.steps} steps\n")
  for name in FLAGS.configs:
    rates, counters, bounds, k = throughput(name)
    seq = rates["sequential"]
    print(f"{name}: {k} modules, stages cut before module {bounds}\n\n| variant | images/s | "
          "ratio to sequential | 2 processes / 1 stage |\n|---|---|---|---|")
    for v, r in rates.items():
      ratio = ""
      if v.endswith("2 processes"):
        ratio = f"{r / rates[v.replace('2 processes', '1 stage')]:.2f}"
      print(f"| {v} | {r:.1f} | {r / seq:.2f} | {ratio} |")
    print("\nstage processes, per step of the best round:\n\n| variant | stage | waited for "
          "received values s | waited for own sends s | values sent | MB sent | sender s | "
          "CPU s | cores busy |\n|---|---|---|---|---|---|---|---|---|")
    for v, per_stage in counters.items():
      for st, c in enumerate(per_stage):
        per = lambda x: x / FLAGS.steps
        print(f"| {v} | {st} | {per(c['receive_wait']):.4f} | {per(c['guard_wait']):.4f} | "
              f"{per(c['sent']):.0f} | {per(c['bytes']) / 1e6:.2f} | {per(c['send_busy']):.4f} | "
              f"{per(c['cpu']):.3f} | {c['cpu'] / c['wall']:.2f} |")
    print()


if __name__ == "__main__":
  app.run(main)
