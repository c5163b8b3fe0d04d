"""Predicted step time and throughput of the pipelined executor for S = 1, 2, 4, 8 stages at
NVLink- and PCIe-class link bandwidths (benchmarks/pipeline_model.py, docs/design.md §3.9),
checked against the executor on 2 emulated CPU devices.

  python benchmarks/pipeline_predict.py [--configs=cifar10_r32_k16_dgl,cifar10_r32_k16_infopro]
      [--batch=128] [--microbatches=8] [--steps=3] [--rounds=2]
      [--counted=cifar10_r110_k55_dgl,imagenet_r101_k4_infopro] [--device_tflops=100]
      [--dispatch_us=0] [--bandwidths=450,25] [--stages=1,2,4,8]

Runs under benchmarks/pipeline_throughput.py's XLA flags (2 emulated CPU devices, one compute
thread each) and takes its flags --configs, --batch, --microbatches, --steps, --rounds.

1. Check (`--configs`, configs/cifar.py cells at --batch, random data). Per round, interleaved
   so that load from other processes hits all alike: one sequential step at the micro-batch size
   n = N/M on device 0, each call timed from dispatch to `block_until_ready` (the cost the model
   takes: per call, the minimum over rounds; the host's dispatch time per call: until the call
   returns, the median), then --steps steps without blocking of the pipelined executor with
   S = 1 (the M micro-batches accumulated on one device: the model's baseline), and with S = 2 in
   sync and async mode (stages balanced by FLOPs, as the executor does), each timed as
   pipeline_throughput.py does (the best round). Against each, the model's prediction of the same
   round (`pipeline_model.simulate`: --steps steps from idle, on the executor's boundaries), from
   the timed seconds and from XLA's FLOPs per call at the CPU rate (Σ FLOPs / Σ seconds of the
   timed calls), with the load average after each round and the cores the process kept busy
   in the best round (its CPU seconds, every thread, / wall seconds) against the model's
   (Σ program seconds / the round's end): the model assumes a core per device.
2. Tables (per config; S in --stages, B in --bandwidths): the boundaries minimising the slowest
   stage or link (`best_boundaries`), one sync step from idle and its bubble, the steady step
   time, images/s and speed-up over S = 1 of both modes, the calls per step, and the sync
   images/s on the FLOP-balanced boundaries the executor picks (`stages.balanced`). The checked
   configs use their timed seconds (so the bandwidth hardly matters: a CPU thread computes
   slowly). The `--counted` published rows, at their config's batch size, use XLA's FLOPs per
   call (programs lowered at the micro-batch's shapes, nothing compiled) divided by an assumed
   device rate `--device_tflops`, an input, not a measurement, with a host dispatching one call
   per `--dispatch_us`; then again at the CPU rate of part 1.
"""
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, ".")
# sets XLA_FLAGS before JAX starts and defines --configs, --batch, --microbatches, --steps, --rounds
from benchmarks import pipeline_throughput as throughput  # noqa: E402  (first: XLA_FLAGS)

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks import pipeline_model as pm  # noqa: E402
from configs import published  # noqa: E402
from jax_local import engine, memory  # noqa: E402
from jax_local.engine import pipeline_schedule as psched  # noqa: E402
from jax_local.engine import programs, sequential, stages  # noqa: E402
from jax_local.train_state import init_state  # noqa: E402

flags.DEFINE_list("counted", ["cifar10_r110_k55_dgl", "imagenet_r101_k4_infopro"],
                  "Published rows costed by FLOPs at their config's batch size (row:batch "
                  "overrides it).")
flags.DEFINE_float("device_tflops", 100.0, "Assumed sustained TFLOP/s of one device for the "
                   "counted rows (an input, not a measurement).")
flags.DEFINE_list("bandwidths", ["450", "25"], "Link bandwidths, GB/s.")
flags.DEFINE_list("stages", ["1", "2", "4", "8"], "Stage counts S of the tables, 1 first (the "
                  "speed-ups' base).")
flags.DEFINE_float("dispatch_us", 0.0, "Host µs to dispatch one call in the counted rows' "
                   "tables (0: a host that keeps ahead of the devices; the measured configs use "
                   "the median measured in part 1).")
flags.DEFINE_float("check_bandwidth", 10.0, "GB/s of a copy between two emulated CPU devices "
                   "in the S = 2 check (a memcpy).")
FLAGS = flags.FLAGS
GB = 1e9


def _nbytes(tree) -> float:
  """Bytes of a pytree of arrays or ShapeDtypeStructs."""
  return float(sum(np.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


def _record(outputs, values, into):
  """The bytes of each value a call writes, by name (an EMA copy, a view, keeps its holder's)."""
  if isinstance(outputs, str):
    into[outputs] = _nbytes(values)
  elif isinstance(outputs, dict):
    for k, o in outputs.items():
      _record(o, values[k], into)
  elif isinstance(outputs, tuple):
    for o, v in zip(outputs, values):
      _record(o, v, into)


class Costs:
  """Per call of one sequential step at the micro-batch size: `flops` and `seconds` by label,
  `nbytes` by value name, `dispatch` (host seconds per call, measured runs only)."""

  def __init__(self, step, state, batch):
    self.step, self.flops, self.seconds, self.dispatch = step, {}, {}, []
    self.nbytes = {n: _nbytes(v) for n, v in
                   sequential.step_inputs(step.schedule, state, batch).items()}
    self._lowered = {}

  def count(self, c, fn, *args):
    """`call` hook: XLA's FLOPs of the call's program, lowered once per program."""
    key = programs.program_key(fn, args)
    if key not in self._lowered:
      traced = fn.trace(*args)
      self._lowered[key] = (float(traced.lower().cost_analysis().get("flops", 0.0)),
                            traced.out_info)
    self.flops[c.label], out = self._lowered[key]
    _record(c.outputs, out, self.nbytes)
    return out

  def time(self, c, fn, *args):
    """`call` hook: seconds from dispatch to the outputs' existence (the minimum so far)."""
    start = time.perf_counter()
    out = fn(*args)
    issued = time.perf_counter()
    jax.block_until_ready(out)
    seconds = time.perf_counter() - start
    self.seconds[c.label] = min(self.seconds.get(c.label, seconds), seconds)
    self.dispatch.append(issued - start)
    return out

  def at_rate(self, flops_per_second: float) -> dict:
    return {label: f / flops_per_second for label, f in self.flops.items()}


def _step(s, executor: str, pipeline=None):
  """`executor`'s step for the setup `s` (`engine.make_train_step`)."""
  return engine.make_train_step(executor, s.plan, s.tx, pipeline)


def counted_costs(s, n: int) -> Costs:
  """FLOPs and bytes of `s`'s sequential step at batch n, from abstract values."""
  state, batch = memory.abstract_inputs(s.plan, s.tx, s.image_shape, n)
  costs = Costs(_step(s, "sequential"), state, batch)
  costs.step.run(state, batch, costs.count)
  return costs


def _flop_boundaries(plan, costs: Costs, num_stages: int) -> tuple[int, ...]:
  """The executor's placement (`pipelined.PipelinedStep`): FLOPs per module, balanced."""
  per_module = [0.0] * plan.num_modules
  for c in costs.step.schedule.calls:
    if c.module is not None:
      per_module[c.module] += costs.flops[c.label]
  return stages.balanced(per_module, num_stages, stages.preferred_cuts(plan, num_stages))


def _module_flops(plan, costs: Costs) -> str:
  """GFLOP of each module's calls per micro-batch (gradient calls) and per update, for K ≤ 16."""
  if plan.num_modules > 16:
    return ""
  t, u = pm.module_seconds(costs.step.schedule, costs.flops, plan.num_modules)
  return " GFLOP per module (micro-batch; update): " + "; ".join(
      f"{i}: {a / 1e9:.1f}; {b / 1e9:.2f}" for i, (a, b) in enumerate(zip(t, u))) + "."


def table(plan, costs: Costs, seconds: dict, batch: int, dispatch: float) -> str:
  """The Markdown table of the model for S in --stages, B in --bandwidths."""
  k, m = plan.num_modules, FLAGS.microbatches
  t, u = pm.module_seconds(costs.step.schedule, seconds, k)
  head = ("| S | link GB/s | cuts (best) | sync: one step s | bubble | step s | img/s | speed-up "
          "| calls | async: cuts | step s | img/s | speed-up | FLOP-balanced cuts | sync img/s "
          "there |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
  rows, base = [], {}
  for num in map(int, FLAGS.stages):
    if num > k:
      rows.append(f"| {num} | | more stages than modules ({k}) | | | | | | | | | | | | |")
      continue
    for bw in (FLAGS.bandwidths if num > 1 else FLAGS.bandwidths[:1]):
      links = pm.cut_seconds(costs.nbytes, k, m, float(bw) * GB)
      cuts = stages.preferred_cuts(plan, num)
      got = {}
      for mode in psched.MODES:
        bounds = pm.best_boundaries(pm.module_work(t, u, m, mode), links, num, cuts)
        got[mode] = pm.predict(plan, bounds, m, mode, seconds, costs.nbytes, float(bw) * GB,
                               dispatch)
        base.setdefault(mode, got[mode].step)
      flop_bounds = _flop_boundaries(plan, costs, num)
      flop = pm.predict(plan, flop_bounds, m, "sync", seconds, costs.nbytes, float(bw) * GB,
                        dispatch)
      sy, asy = got["sync"], got["async"]
      rows.append(
          f"| {num} | {bw if num > 1 else '-'} | {_cuts(sy.boundaries)} | {sy.one_step:.4g} | "
          f"{sy.bubble:.2f} | {sy.step:.4g} | {batch / sy.step:.1f} | "
          f"{base['sync'] / sy.step:.2f} | {sy.calls} | "
          f"{'same' if asy.boundaries == sy.boundaries else _cuts(asy.boundaries)} | "
          f"{asy.step:.4g} | {batch / asy.step:.1f} | {base['async'] / asy.step:.2f} | "
          f"{'same' if flop_bounds == sy.boundaries else _cuts(flop_bounds)} | "
          f"{batch / flop.step:.1f} |")
  return head + "\n".join(rows)


def _cuts(bounds) -> str:
  return ",".join(map(str, bounds)) or "-"


def _cpu_seconds() -> float:
  """CPU seconds of this process so far, every thread (host and devices)."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _load() -> str:
  return "/".join(f"{x:.1f}" for x in os.getloadavg())


def check(name: str):
  """Part 1 for one config: prints the measured and predicted rounds; returns the setup, its
  costs (seconds timed), the host's seconds per call and the CPU rate."""
  config = throughput._config(name)
  s = memory.setup(config)
  n, m, k = FLAGS.batch, FLAGS.microbatches, s.plan.num_modules
  costs = counted_costs(s, n // m)
  d0 = jax.devices()[0]
  fresh = lambda: jax.device_put(init_state(s.plan, s.tx, jax.random.PRNGKey(0), s.image_shape),
                                 d0)
  data = lambda rows: jax.device_put(
      {"image": jax.random.normal(jax.random.PRNGKey(1), (rows, *s.image_shape)),
       "label": jnp.arange(rows, dtype=jnp.int32) % config.data.num_classes}, d0)
  batch, micro = data(n), data(n // m)
  variants = {(num, mode): _step(s, "pipelined", {"stages": num, "microbatches": m, "mode": mode})
              for num, mode in ((1, "sync"), (2, "sync"), (2, "async"))}
  states = {v: jax.block_until_ready(step(fresh(), batch)[0]) for v, step in variants.items()}
  timing_state = jax.block_until_ready(costs.step.run(fresh(), micro)[0])   # compiles
  best, cores, loads = {v: float("inf") for v in variants}, {}, [_load()]
  for _ in range(FLAGS.rounds):
    timing_state = jax.block_until_ready(costs.step.run(timing_state, micro, costs.time)[0])
    for v, step in variants.items():
      state = states[v]
      cpu, start = _cpu_seconds(), time.perf_counter()
      for _ in range(FLAGS.steps):
        state, metrics = step(state, batch)
      jax.block_until_ready((state, metrics))
      wall = time.perf_counter() - start
      if wall < best[v]:
        best[v], cores[v] = wall, (_cpu_seconds() - cpu) / wall
      states[v] = state
    loads.append(_load())
  flops = sum(costs.flops.values())
  cpu_rate = flops / sum(costs.seconds[label] for label in costs.flops)
  dispatch = statistics.median(costs.dispatch)
  t, u = pm.module_seconds(costs.step.schedule, costs.seconds, k)
  print(f"### {name}: {k} modules, batch {n}, M = {m} micro-batches of {n // m}\n\n"
        f"Sequential step at batch {n // m}: {sum(costs.seconds.values()):.3f} s "
        f"({flops / 1e9:.2f} GFLOP, CPU rate {cpu_rate / 1e9:.2f} GFLOP/s); dispatch per call "
        f"{dispatch * 1e6:.0f} µs (median of {len(costs.dispatch)}, min "
        f"{min(costs.dispatch) * 1e6:.0f}); load average (1/5/15 min) after compiling "
        f"{loads[0]}, after each round {', '.join(loads[1:])}. Per module (ms per micro-batch, "
        f"update ms, MB of its input per micro-batch): " + "; ".join(
            f"{i}: {a * 1e3:.0f}, {b * 1e3:.1f}, {costs.nbytes[f'act/{i}'] / 1e6:.2f}"
            for i, (a, b) in enumerate(zip(t, u))) + ".\n")
  print("| pipelined executor | cut before | measured img/s | predicted (seconds) | error | "
        "predicted (FLOPs at the CPU rate) | error | cores busy: measured | model | "
        "predicted at the measured cores | error |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|")
  seconds = (costs.seconds, costs.at_rate(cpu_rate))
  rates = {}
  for (num, mode), step in variants.items():
    sch = psched.build(s.plan, step.boundaries, m, mode)
    stage = stages.stage_of(step.boundaries, k)
    runs = [pm.simulate(sch, stage, sec, costs.nbytes, FLAGS.check_bandwidth * GB, FLAGS.steps,
                        dispatch) for sec in seconds]
    rates[num, mode] = [n * FLAGS.steps / best[num, mode]] + [n * FLAGS.steps / r.end
                                                              for r in runs]
    meas, pred, pred_f = rates[num, mode]
    model_cores = sum(runs[0].busy) / runs[0].end
    # the same work on the cores the process got: predicted x measured cores / model cores
    pred_c = pred * cores[num, mode] / model_cores
    print(f"| S = {num} {mode} | {_cuts(step.boundaries)} | {meas:.1f} | {pred:.1f} | "
          f"{pred / meas - 1:+.0%} | {pred_f:.1f} | {pred_f / meas - 1:+.0%} | "
          f"{cores[num, mode]:.2f} | {model_cores:.2f} | {pred_c:.1f} | {pred_c / meas - 1:+.0%} |")
  for mode in psched.MODES:
    meas, pred, pred_f = (a / b for a, b in zip(rates[2, mode], rates[1, "sync"]))
    print(f"| speed-up S = 2 {mode} / S = 1 sync | | {meas:.2f} | {pred:.2f} | "
          f"{pred / meas - 1:+.0%} | {pred_f:.2f} | {pred_f / meas - 1:+.0%} | | | | |")
  print(f"\nBest of {FLAGS.rounds} rounds of {FLAGS.steps} steps; the model runs the same "
        f"{FLAGS.steps} steps from idle with h = {dispatch * 1e6:.0f} µs per call and copies at "
        f"{FLAGS.check_bandwidth:g} GB/s.\n")
  return s, costs, dispatch, cpu_rate


def main(_):
  print(f"XLA_FLAGS={os.environ['XLA_FLAGS']}; {jax.device_count()} devices; "
        f"{len(os.sched_getaffinity(0))} cores\n")
  cpu_rates = []
  for name in FLAGS.configs:
    s, costs, dispatch, rate = check(name)
    cpu_rates.append(rate)
    print(f"Model table, measured seconds, h = {dispatch * 1e6:.0f} µs per call:\n")
    print(table(s.plan, costs, costs.seconds, FLAGS.batch, dispatch) + "\n")
  cpu_rate = statistics.mean(cpu_rates) if cpu_rates else None
  dispatch = FLAGS.dispatch_us * 1e-6
  for spec in FLAGS.counted:
    name, _, batch = spec.partition(":")
    config = published.get_config(name)
    if batch:
      config.data.batch_size = config.data.eval_batch_size = int(batch)
    n, m = config.data.batch_size, FLAGS.microbatches
    s = memory.setup(config)
    t0 = time.perf_counter()
    costs = counted_costs(s, n // m)
    print(f"### {name}: {s.plan.num_modules} modules, batch {n}, M = {m} micro-batches of "
          f"{n // m}\n\n{sum(costs.flops.values()) / 1e9:.1f} GFLOP per micro-batch step "
          f"(lowered in {time.perf_counter() - t0:.0f} s); clean cuts: "
          f"{len(stages.clean_cuts(s.plan))} of {s.plan.num_modules - 1}; "
          f"h = {dispatch * 1e6:.0f} µs per call." + _module_flops(s.plan, costs) + "\n")
    print(f"At {FLAGS.device_tflops:g} TFLOP/s per device (assumed):\n")
    print(table(s.plan, costs, costs.at_rate(FLAGS.device_tflops * 1e12), n, dispatch) + "\n")
    if cpu_rate:
      print(f"At the CPU rate of part 1 ({cpu_rate / 1e9:.2f} GFLOP/s per device):\n")
      print(table(s.plan, costs, costs.at_rate(cpu_rate), n, dispatch) + "\n")


if __name__ == "__main__":
  app.run(main)
