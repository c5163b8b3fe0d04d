"""One part of the device check (benchmarks/gpu_check.sh runs the four in order, each in its own
process with its own deadline).

  python benchmarks/gpu_check.py --part=a|b|c|d --out=DIR --deadline=UNIX_TIME [--smoke]

Rows (ROWS; `--smoke`: SMOKE_ROWS, a ResNet-8 cut into 3 modules at batch 8, same code path
with fewer timed steps, float32 only):
a CIFAR-10 config per row, at batch `BATCH`, grouped by backbone; each group's first row is BP.

  a  memory: per row, the compile-only bytes (`jax_local.memory`, argument + output - alias +
     temp; sequential: the max over programs of host-held buffers + program extra) of the row's
     step (BP rows: the fused BP step; others: the sequential executor) and the measured peak
     of two executed steps in a fresh process (`python -m jax_local.memory --measure_variant`:
     `peak_bytes_in_use` on GPU); ratio measured / compile-only, and each to the group's BP.
     -> a_memory.json, a_memory.md
  b  speed: per group and compute dtype (float32, bfloat16): every row's step compiled, one
     warm-up step, then ROUNDS rounds of STEPS_PER_ROUND steps per row, interleaved
     (`benchmarks/timing.time_interleaved`); median s/step and ratio to the group's BP.
     -> b_speed.json, b_speed.md
  c  roofline: per group's BP and dtype, FLOPs per step from `compiled.cost_analysis()`, the
     median of TIMED_STEPS steps, images/s = batch / s, and the roofline images/s =
     batch * peak / FLOPs for the device's dense peak (PEAK_TFLOPS; float32 convolutions may
     run as TF32 on tensor cores, so both peaks are given). -> c_roofline.json, c_roofline.md
  d  dispatch: per row of the DISPATCH group, TIMED_STEPS sequential steps driven with a
     `call` that counts and times each program launch on the host
     (`SequentialStep.run(state, batch, call)`): programs per step, distinct programs, host
     seconds inside the launches, and the step's wall time (to `block_until_ready`).
     -> d_dispatch.json, d_dispatch.md

Every part writes its files after each row, so a part stopped at its deadline keeps its rows;
a row that fails records its error and the part goes on.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks import timing  # noqa: E402
from configs import cifar  # noqa: E402
from jax_local import memory  # noqa: E402
from jax_local.engine import fused, programs, sequential  # noqa: E402
from jax_local.models import layers  # noqa: E402
from jax_local.train_state import init_state  # noqa: E402

BATCH, SMOKE_BATCH = 1024, 8
# group -> `configs/cifar.py` cell names, the group's BP first; the order is the order of value
ROWS = {
    "r32_k16": ["cifar10_r32_bp", "cifar10_r32_k16_dgl", "cifar10_r32_k16_infopro",
                "cifar10_r32_k16_dgl_hpff", "cifar10_r32_k16_infopro_mlaan"],
    "r110_k55": ["cifar10_r110_bp", "cifar10_r110_k55_dgl", "cifar10_r110_k55_infopro_hpff"],
}
DISPATCH = "r110_k55"
SMOKE_ROWS = {"r8_k3": ["cifar10_r32_bp", "cifar10_r32_k16_dgl"]}
SMOKE_OVERRIDES = {"model.depth": 8, "split.preset": "uniform_k3"}
DTYPES = ("float32", "bfloat16")
ROUNDS, STEPS_PER_ROUND, TIMED_STEPS = 5, 2, 5
# --smoke: fewer steps, float32 only (XLA:CPU compiles bfloat16 convolutions through float32
# conversions, slowly; the compute dtype reaching the step is tested in tests/test_memory.py)
SMOKE_ROUNDS, SMOKE_TIMED_STEPS = 3, 3
# Dense (non-sparse) peaks of one H200 SXM, TFLOP/s, NVIDIA's datasheet: BF16 tensor cores 989,
# TF32 tensor cores 495, FP32 (CUDA cores) 67. The H100 SXM has the same compute peaks.
PEAK_TFLOPS = {"H200": {"bfloat16": 989.0, "tf32": 495.0, "float32": 67.0},
               "H100": {"bfloat16": 989.0, "tf32": 495.0, "float32": 67.0}}
MIB = 2.0 ** 20


class Part:
  """Rows of one part, rewritten to OUT/<name>.json and .md after every row."""

  def __init__(self, out, name, header, deadline):
    self.json_path = os.path.join(out, f"{name}.json")
    self.md_path = os.path.join(out, f"{name}.md")
    self.header, self.rows, self.deadline = header, [], deadline
    self.started = time.time()

  def left(self) -> float:
    return self.deadline - time.time()

  def add(self, row: dict, line: str) -> None:
    row["line"] = line
    self.rows.append(row)
    with open(self.json_path, "w") as f:
      json.dump({"device": device_name(), "rows": self.rows,
                 "seconds": round(time.time() - self.started, 1)}, f, indent=1)
    with open(self.md_path, "w") as f:
      f.write(f"{device_name()}\n\n{self.header}\n" + "".join(r["line"] + "\n"
                                                              for r in self.rows))
    print(line, flush=True)

  def error(self, what: str, e: BaseException) -> None:
    traceback.print_exc()
    self.add({"what": what, "error": f"{type(e).__name__}: {e}"[:500]},
             f"| {what} | error: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''} |")


def device_name() -> str:
  d = jax.devices()[0]
  return f"{d.platform} {d.device_kind} x{jax.device_count()}, jax {jax.__version__}"


def overrides(smoke: bool, dtype: str | None = None) -> dict:
  o = {"data.batch_size": SMOKE_BATCH if smoke else BATCH}
  o["data.eval_batch_size"] = o["data.batch_size"]
  if smoke:
    o.update(SMOKE_OVERRIDES)
  if dtype:
    o["model.dtype"] = dtype
  return o


def load_config(name: str, fields: dict):
  """The `configs/cifar.py` cell `name` with dotted-path overrides, e.g. {"data.batch_size": 8}."""
  config = cifar.get_config(name)
  config.update_from_flattened_dict(fields)
  return config


def row_variant(group_rows, name) -> str:
  """BP rows are measured as the fused BP step, the others as the sequential executor."""
  return "bp" if name == group_rows[0] else "sequential"


# ----------------------------------------------------------------------------- a: memory


def part_memory(out, deadline, smoke):
  part = Part(out, "a_memory", "| group | config | variant | compile-only MiB | measured peak "
              "MiB | measured / compile-only | compile-only / BP | measured / BP | programs "
              "| calls |\n|---|---|---|---|---|---|---|---|---|---|", deadline)
  fields = overrides(smoke)
  bp = {}
  order = interleave(SMOKE_ROWS if smoke else ROWS)
  for group, name in order:
    if part.left() < 10:
      part.add({"group": group, "config": name, "skipped": "budget"},
               f"| {group} | {name} | skipped: out of time |")
      continue
    rows = (SMOKE_ROWS if smoke else ROWS)[group]
    variant = row_variant(rows, name)
    try:
      config = load_config(name, fields)
      (r,) = memory.memory_report(config, variants=(variant,))
      argv = [f"--config={ROOT}/configs/cifar.py:{name}",
              *(f"--config.{k}={v}" for k, v in fields.items()),
              f"--measure_variant={variant}"]
      env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
      run = subprocess.run([sys.executable, "-m", "jax_local.memory", *argv], cwd=ROOT,
                           env=env, capture_output=True, text=True,
                           timeout=max(part.left() - 5, 5))
      if run.returncode:
        raise RuntimeError(f"measure subprocess exit {run.returncode}: {run.stderr[-400:]}")
      measured = json.loads(run.stdout.strip().splitlines()[-1])["measured"]
      if variant == "bp":
        bp[group] = (r.bytes, measured)
      b_c, b_m = bp.get(group, (float("nan"), float("nan")))
      row = {"group": group, "config": name, "variant": variant, "compile_bytes": r.bytes,
             "measured_bytes": measured, "programs": r.programs, "calls": r.calls,
             "compile_s": round(r.compile_s, 1)}
      part.add(row, f"| {group} | {name} | {variant} | {r.bytes / MIB:.0f} | "
               f"{measured / MIB:.0f} | {measured / r.bytes:.3f} | {r.bytes / b_c:.3f} | "
               f"{measured / b_m:.3f} | {r.programs} | {r.calls} |")
    except Exception as e:  # noqa: BLE001 - one row's failure must not stop the part
      part.error(f"{group} | {name}", e)
    jax.clear_caches()


def interleave(rows: dict) -> list:
  """(group, config) in order of value: each group's BP and first method, then the rest of
  the groups' rows in turn."""
  firsts = [(g, n) for g, names in rows.items() for n in names[:2]]
  rest, names = [], {g: list(v[2:]) for g, v in rows.items()}
  while any(names.values()):
    for g in names:
      if names[g]:
        rest.append((g, names[g].pop(0)))
  return firsts + rest


# ----------------------------------------------------------------------------- b: speed


def build_step(name, fields, variant):
  """(step, state, batch, plan) of a config's BP (fused) or sequential step, compiled: BP
  ahead of time, sequential by one call (its programs compile on first use)."""
  config = load_config(name, fields)
  s = memory.setup(config)
  n = config.data.batch_size
  batch = {"image": jax.random.normal(jax.random.PRNGKey(1), (n, *s.image_shape)),
           "label": jnp.arange(n, dtype=jnp.int32) % config.data.num_classes}
  if variant == "bp":
    state = init_state(s.bp_plan, s.bp_tx, jax.random.PRNGKey(0), s.image_shape)
    step = fused.make_train_step(s.bp_plan, s.bp_tx)
    (lowered,) = step.lower(state, batch)
    step = lowered.compile()
  else:
    state = init_state(s.plan, s.tx, jax.random.PRNGKey(0), s.image_shape)
    step = sequential.make_train_step(s.plan, s.tx)
  state, metrics = step(state, batch)      # warm-up (compiles the sequential programs)
  jax.block_until_ready((state, metrics))
  return step, state, batch, s.plan


def part_speed(out, deadline, smoke):
  rounds, per_round = (SMOKE_ROUNDS, 1) if smoke else (ROUNDS, STEPS_PER_ROUND)
  part = Part(out, "b_speed", f"median of {rounds} interleaved rounds of {per_round} "
              "steps\n\n| group | dtype | config | variant | s/step | ratio to BP | compile + "
              "warm-up s |\n|---|---|---|---|---|---|---|", deadline)
  groups = SMOKE_ROWS if smoke else ROWS
  for group, names in groups.items():
    for dtype in DTYPES[:1] if smoke else DTYPES:
      if part.left() < 20:
        part.add({"group": group, "dtype": dtype, "skipped": "budget"},
                 f"| {group} | {dtype} | skipped: out of time |")
        continue
      fields = overrides(smoke, dtype)
      runs, compile_s = {}, {}
      with layers.policy(memory.compute_policy(load_config(names[0], fields))):
        for name in names:
          if part.left() < 15:
            break
          try:
            t = time.perf_counter()
            step, state, batch, _ = build_step(name, fields, row_variant(names, name))
            compile_s[name] = time.perf_counter() - t
            runs[name] = {"step": step, "state": state}
          except Exception as e:  # noqa: BLE001
            part.error(f"{group} | {dtype} | {name}", e)
        try:
          if runs:
            timing.time_interleaved(runs, batch, rounds, per_round)
        except Exception as e:  # noqa: BLE001
          part.error(f"{group} | {dtype} | timing", e)
          runs = {}
      med = {n: statistics.median(r["times"]) for n, r in runs.items() if r.get("times")}
      for name in names:
        if name not in med:
          continue
        ratio = med[name] / med[names[0]] if names[0] in med else float("nan")
        part.add({"group": group, "dtype": dtype, "config": name,
                  "variant": row_variant(names, name), "s_per_step": med[name],
                  "times": runs[name]["times"], "ratio_to_bp": ratio,
                  "compile_s": round(compile_s[name], 1)},
                 f"| {group} | {dtype} | {name} | {row_variant(names, name)} | "
                 f"{med[name]:.4f} | {ratio:.2f} | {compile_s[name]:.0f} |")
      del runs
      jax.clear_caches()


# ----------------------------------------------------------------------------- c: roofline


def flops_of(compiled) -> float:
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):   # older JAX: one dict per program
    cost = cost[0]
  return float(cost["flops"])


def part_roofline(out, deadline, smoke):
  kind = jax.devices()[0].device_kind
  peaks = next((p for k, p in PEAK_TFLOPS.items() if k in kind), None)
  part = Part(out, "c_roofline", f"peaks (dense TFLOP/s) for '{kind}': {peaks}\n\n| group | "
              "dtype | batch | GFLOP/step | s/step | images/s | roofline images/s | fraction "
              "of roofline | fraction (TF32 peak) |\n|---|---|---|---|---|---|---|---|---|",
              deadline)
  groups = SMOKE_ROWS if smoke else ROWS
  for group, names in groups.items():
    for dtype in DTYPES[:1] if smoke else DTYPES:
      if part.left() < 15:
        part.add({"group": group, "dtype": dtype, "skipped": "budget"},
                 f"| {group} | {dtype} | skipped: out of time |")
        continue
      fields = overrides(smoke, dtype)
      try:
        with layers.policy(memory.compute_policy(load_config(names[0], fields))):
          step, state, batch, _ = build_step(names[0], fields, "bp")
          flops = flops_of(step)
          times = []
          for _ in range(SMOKE_TIMED_STEPS if smoke else TIMED_STEPS):
            t = time.perf_counter()
            state, metrics = step(state, batch)
            jax.block_until_ready((state, metrics))
            times.append(time.perf_counter() - t)
        sec = statistics.median(times)
        n = fields["data.batch_size"]
        row = {"group": group, "dtype": dtype, "batch": n, "flops": flops, "s_per_step": sec,
               "images_per_s": n / sec, "times": times, "peaks_tflops": peaks}
        cells = ["n/a", "n/a", "n/a"]
        if peaks:
          roof = n * peaks[dtype] * 1e12 / flops
          row.update(roofline_images_per_s=roof, fraction=n / sec / roof)
          cells = [f"{roof:.0f}", f"{n / sec / roof:.3f}", "-"]
          if dtype == "float32":
            tf32 = n / sec / (n * peaks["tf32"] * 1e12 / flops)
            row["fraction_tf32"] = tf32
            cells[2] = f"{tf32:.3f}"
        part.add(row, f"| {group} | {dtype} | {n} | {flops / 1e9:.1f} | {sec:.4f} | "
                 f"{n / sec:.0f} | {' | '.join(cells)} |")
      except Exception as e:  # noqa: BLE001
        part.error(f"{group} | {dtype}", e)
      jax.clear_caches()


# ----------------------------------------------------------------------------- d: dispatch


class LaunchTimer:
  """`call` for `SequentialStep.run` that runs each program and adds up the host time spent
  in its launch (JAX dispatch is asynchronous: the call returns once the program is queued)."""

  def __init__(self):
    self.calls, self.host_s, self.programs = 0, 0.0, set()

  def __call__(self, call, fn, *args):
    del call
    t = time.perf_counter()
    result = fn(*args)
    self.host_s += time.perf_counter() - t
    self.calls += 1
    self.programs.add(programs.program_key(fn, args))
    return result


def part_dispatch(out, deadline, smoke):
  steps = SMOKE_TIMED_STEPS if smoke else TIMED_STEPS
  part = Part(out, "d_dispatch", f"float32, median of {steps} steps\n\n| group | config | "
              "programs called / step | distinct programs | host s in launches / step | "
              "s/step | launch share of step |\n|---|---|---|---|---|---|---|", deadline)
  group = next(iter(SMOKE_ROWS)) if smoke else DISPATCH
  names = (SMOKE_ROWS if smoke else ROWS)[group]
  fields = overrides(smoke, "float32")
  for name in names[1:]:
    if part.left() < 15:
      part.add({"group": group, "config": name, "skipped": "budget"},
               f"| {group} | {name} | skipped: out of time |")
      continue
    try:
      step, state, batch, _ = build_step(name, fields, "sequential")
      batch = jax.device_put(batch)
      samples = []
      for _ in range(steps):
        timer = LaunchTimer()
        t = time.perf_counter()
        state, metrics = step.run(state, batch, timer)
        jax.block_until_ready((state, metrics))
        samples.append((timer.calls, len(timer.programs), timer.host_s,
                        time.perf_counter() - t))
      calls = samples[-1][0]
      host = statistics.median(s[2] for s in samples)
      wall = statistics.median(s[3] for s in samples)
      part.add({"group": group, "config": name, "calls_per_step": calls,
                "distinct_programs": samples[-1][1], "host_launch_s": host, "s_per_step": wall,
                "samples": samples},
               f"| {group} | {name} | {calls} | {samples[-1][1]} | {host:.4f} | {wall:.4f} | "
               f"{host / wall:.2f} |")
    except Exception as e:  # noqa: BLE001
      part.error(f"{group} | {name}", e)
    jax.clear_caches()


PARTS = {"a": part_memory, "b": part_speed, "c": part_roofline, "d": part_dispatch}


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--part", choices=sorted(PARTS), required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--deadline", type=float, required=True, help="Unix time this part ends by.")
  p.add_argument("--smoke", action="store_true", help="ResNet-8 rows at batch 8 (CPU, seconds).")
  args = p.parse_args()
  os.makedirs(args.out, exist_ok=True)
  PARTS[args.part](args.out, args.deadline, args.smoke)


if __name__ == "__main__":
  main()
