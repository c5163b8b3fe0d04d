"""XLA memory report: BP, BP with remat, and the fused and sequential executors of a config.

  python -m jax_local.memory --config=configs/X.py [--config.data.batch_size=N]
      [--variants=bp,sequential]
      [--xla_dump_dir=DIR] [--execute] [--device_memory_profile=PREFIX]
      [--chart=PATH.pdf|.svg|.png] [--dpi=N]

Compile-only (abstract shapes from `jax.eval_shape`, nothing allocated), so paper sizes can be
reported on a CPU. Every number is, per jitted program,
    argument + output - alias + temp        (from `compiled.memory_analysis()`)
of one whole training step (gradients, optimizer update, EMA) in the config's compute dtype
(`model.dtype`), arguments = state + batch:
  bp          the config's backbone trained end to end (the BP plan), fused executor
  bp_remat    the same with `jax.checkpoint` around every block
  fused       the config's plan, one jitted step (engine/fused.py)
  sequential  the config's plan, one jitted program per call of its schedule
              (engine/schedule.py). Every program is compiled for abstract arguments; at each
              call the schedule says which named values the driver holds (`live_during`: state,
              gradient buffers written so far, saved detached activations, cascade cotangents,
              new statistics and metrics so far, batch; the call's arguments are among them;
              each buffer once), and the call adds its program's output - alias + temp. The
              row is the max over calls.
With --execute each variant also runs (two steps, in a fresh subprocess) and reports the
measured peak: `peak_bytes_in_use` on GPU/TPU; on CPU the process's RSS high-water mark
during the second step minus the RSS before it, plus the bytes of state and batch (so it is
comparable with the compile-time number). The CPU numbers hold for large buffers only.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax_local import config_validation, experiment, parallel
from jax_local.engine import forward, fused, programs, sequential
from jax_local.engine import schedule as sched
from jax_local.models import layers
from jax_local.models.backbone import apply_block
from jax_local.train_state import init_state

VARIANTS = ("bp", "bp_remat", "fused", "sequential")
MIB = 2.0 ** 20


@dataclasses.dataclass
class Row:
  name: str                     # one of VARIANTS
  bytes: int                    # compile-time peak estimate (see module docstring)
  ratio: float = float("nan")   # bytes / bp bytes
  programs: int = 1             # distinct compiled programs
  calls: int = 1                # programs called per step (sequential: units, parts, ...)
  compile_s: float = 0.0        # wall time of trace + lower + compile of those programs
  measured: int | None = None   # --execute: measured peak (bytes)
  detail: str = ""


def program_bytes(compiled) -> int:
  """argument + output - alias + temp of a compiled program."""
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes)


def tree_bytes(*trees) -> int:
  """Bytes of the distinct array leaves (counted once by identity) of `trees`."""
  seen = {}
  for leaf in jax.tree.leaves(trees):
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
      seen[id(leaf)] = math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
  return sum(seen.values())


@dataclasses.dataclass
class Setup:
  plan: object
  bp_plan: object
  tx: object
  bp_tx: object
  image_shape: tuple


def setup(config) -> Setup:
  """A validated config's plan and BP's plan on the same backbone and input normalisation
  (`experiment.build`, without data)."""
  exp = experiment.build(config)
  bp_method = experiment.method_config("bp")
  bp_plan = experiment.build_plan(bp_method, exp.backbone, exp.split, exp.dataset.num_classes,
                                  exp.plan.normalisation)
  return Setup(exp.plan, bp_plan, exp.tx, exp.base_tx, exp.dataset.image_shape)


def abstract_inputs(plan, tx, image_shape, batch_size):
  """(state, batch) as ShapeDtypeStructs: nothing is allocated."""
  state = jax.eval_shape(lambda: init_state(plan, tx, jax.random.PRNGKey(0), image_shape))
  batch = {"image": jax.ShapeDtypeStruct((batch_size, *image_shape), jnp.float32),
           "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}
  return state, batch


def make_bp_remat_step(plan, tx):
  """BP with `jax.checkpoint` around every block; `plan` is a one-term BP plan."""
  term = plan.terms[0]

  def loss_fn(params, stats, batch):
    h, new = batch["image"], {}
    for name in plan.backbone.block_names:
      block_fn = jax.checkpoint(functools.partial(apply_block, plan.backbone.module(name),
                                                  train=True))
      h, new[name] = block_fn(params["backbone"][name], stats["backbone"][name], h)
    loss, _, _ = forward.apply_head(plan, term, params, stats, h, batch)
    return loss, new

  def step(state, batch):
    batch = forward.with_image01(batch, plan.normalisation)
    grads, new = jax.grad(loss_fn, has_aux=True)(state.params, state.batch_stats, batch)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         batch_stats={"backbone": new, "heads": state.batch_stats["heads"]}), {}

  return jax.jit(step, donate_argnums=0)


class ProgramCompiler:
  """`call` for `SequentialStep.run`: compiles each program for abstract arguments, no execution
  (identical programs, same function and argument shapes, once). `calls`: per call, (output -
  alias + temp, argument bytes, abstract outputs)."""

  def __init__(self):
    self.cache, self.calls = {}, []

  def __call__(self, call, fn, *args):
    traced = fn.trace(*args)
    key = programs.program_key(fn, args)
    if key not in self.cache:
      m = traced.lower().compile().memory_analysis()
      self.cache[key] = (m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes,
                         m.argument_size_in_bytes)
    self.calls.append((*self.cache[key], traced.out_info))
    return traced.out_info


# what the report calls the values of the sequential schedule, by the first part of their name
HELD = {"params": "state", "opt": "state", "stats": "state", "step": "state", "grad": "grads",
        "act": "acts", "z": "acts", "ct": "cotangents", "batch": "batch"}
HELD_ORDER = ("state", "grads", "acts", "cotangents", "other", "batch")


def held_bytes(schedule, env, compiled: ProgramCompiler) -> list[tuple[int, dict[str, int]]]:
  """Per call of `schedule`: bytes of the values held while it runs (`Schedule.live_during`,
  each leaf once) and the same by kind (`HELD`, else "other"). env: the step's inputs; the
  calls' outputs are bound into it as the walk goes."""
  out = []
  for c, names, (_, _, outputs) in zip(schedule.calls, schedule.live_during(), compiled.calls):
    kinds = {k: [] for k in HELD_ORDER}
    for n in names:
      kinds[HELD.get(n.split("/")[0], "other")].append(env[n])
    out.append((tree_bytes([env[n] for n in names]),
                {k: tree_bytes(v) for k, v in kinds.items()}))
    sched.bind(c.outputs, outputs, env)
  return out


def _analyse(variant, s: Setup, batch_size) -> Row:
  t0 = time.time()
  if variant == "bp_remat":
    state, batch = abstract_inputs(s.bp_plan, s.bp_tx, s.image_shape, batch_size)
    step = make_bp_remat_step(s.bp_plan, s.bp_tx)
    row = Row(variant, program_bytes(step.lower(state, batch).compile()))
  elif variant == "bp":
    state, batch = abstract_inputs(s.bp_plan, s.bp_tx, s.image_shape, batch_size)
    (lowered,) = fused.make_train_step(s.bp_plan, s.bp_tx).lower(state, batch)
    row = Row(variant, program_bytes(lowered.compile()))
  else:
    state, batch = abstract_inputs(s.plan, s.tx, s.image_shape, batch_size)
    if variant == "fused":
      (lowered,) = fused.make_train_step(s.plan, s.tx).lower(state, batch)
      row = Row(variant, program_bytes(lowered.compile()))
    else:
      step = sequential.make_train_step(s.plan, s.tx)
      compiled = ProgramCompiler()
      step.run(state, batch, compiled)
      held = held_bytes(step.schedule, sequential.step_inputs(step.schedule, state, batch),
                        compiled)
      totals = [h + extra for (h, _), (extra, _, _) in zip(held, compiled.calls)]
      k = int(np.argmax(totals))
      (live, kinds), extra = held[k], compiled.calls[k][0]
      parts = ", ".join(f"{n} {v / MIB:.1f}" for n, v in kinds.items() if v)
      largest = max(args + extra for extra, args, _ in compiled.calls)
      row = Row(variant, max(totals), programs=len(compiled.cache), calls=len(compiled.calls),
                detail=(f"peak at {step.schedule.calls[k].label} of {len(compiled.calls)} calls: "
                        f"host-held {live / MIB:.1f} MiB ({parts}; overlaps counted once) + "
                        f"program out-alias+temp {extra / MIB:.1f} MiB; largest program alone "
                        f"(arg+out-alias+temp) {largest / MIB:.1f} MiB"))
  row.compile_s = time.time() - t0
  return row


def _rss_kib(field):
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field):
        return int(line.split()[1])
  raise RuntimeError(field)


def peak_memory_record() -> dict[str, int]:
  """What a training run logs about its memory so far: {"peak_bytes_in_use": max over this
  process's devices} where the backend reports it (GPU), else {"peak_rss_bytes": this process's
  resident-set high-water mark} (CPU: host memory of the whole process, Python included)."""
  peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in jax.local_devices()]
  if all(p is not None for p in peaks):
    return {"peak_bytes_in_use": int(max(peaks))}
  return {"peak_rss_bytes": _rss_kib("VmHWM:") * 1024}


def compute_policy(config) -> layers.Policy:
  """The layer policy of `config.model.dtype` on one device: bf16 activations on backends with
  bf16 units (parameters, optimizer state and statistics stay float32). XLA:CPU computes bf16
  convolutions through float32 conversions, so there the report shows more memory, not less."""
  return layers.Policy(parallel.DTYPES[config.model.get("dtype", "float32")])


def measure(config, variant, profile_prefix="") -> int | None:
  """Runs two steps of `variant` at the config's batch; returns the measured peak (bytes)."""
  with layers.policy(compute_policy(config)):
    return _measure(config, variant, profile_prefix)


def _measure(config, variant, profile_prefix):
  s = setup(config)
  plan, tx = (s.bp_plan, s.bp_tx) if variant.startswith("bp") else (s.plan, s.tx)
  make = {"bp": fused.make_train_step, "bp_remat": make_bp_remat_step,
          "fused": fused.make_train_step, "sequential": sequential.make_train_step}[variant]
  step = make(plan, tx)
  state = init_state(plan, tx, jax.random.PRNGKey(0), s.image_shape)
  n = config.data.batch_size
  batch = {"image": jax.random.normal(jax.random.PRNGKey(1), (n, *s.image_shape)),
           "label": jnp.arange(n, dtype=jnp.int32) % config.data.num_classes}
  state, _ = step(state, batch)
  jax.block_until_ready(state)
  stats = jax.devices()[0].memory_stats()
  if stats is None:   # CPU: reset the RSS high-water mark
    with open("/proc/self/clear_refs", "w") as f:
      f.write("5")
    before = _rss_kib("VmRSS")
  state, _ = step(state, batch)
  jax.block_until_ready(state)
  if profile_prefix:
    jax.profiler.save_device_memory_profile(f"{profile_prefix}.{variant}.prof")
  if stats is None:
    return (_rss_kib("VmHWM") - before) * 1024 + tree_bytes(state, batch)
  return jax.devices()[0].memory_stats()["peak_bytes_in_use"]


def memory_report(config, variants=VARIANTS, execute: bool = False, argv=()) -> list[Row]:
  """One Row per variant at the config's batch size; ratios to the "bp" row if present.

  execute: also measure each variant in a fresh subprocess of this module, started with
  `argv` (the command-line flags, so the subprocess sees the same config).
  """
  s = setup(config)
  with layers.policy(compute_policy(config)):
    rows = [_analyse(v, s, config.data.batch_size) for v in variants]
  bp = next((r.bytes for r in rows if r.name == "bp"), None)
  # fixed mmap threshold: freed large buffers go back to the OS, so RSS follows live buffers
  env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
  for r in rows:
    r.ratio = r.bytes / bp if bp else float("nan")
    if execute:
      out = subprocess.run([sys.executable, "-m", "jax_local.memory", *argv,
                            f"--measure_variant={r.name}"], capture_output=True, text=True,
                           check=True, env=env).stdout
      r.measured = json.loads(out.strip().splitlines()[-1])["measured"]
  return rows


def format_table(rows) -> str:
  lines = [f"{'variant':<11} {'MiB':>9} {'ratio':>6} {'programs':>8} {'compile_s':>9} "
           f"{'measured MiB':>12}"]
  for r in rows:
    measured = "n/a" if r.measured is None else f"{r.measured / MIB:.1f}"
    lines.append(f"{r.name:<11} {r.bytes / MIB:9.1f} {r.ratio:6.3f} {r.programs:8d} "
                 f"{r.compile_s:9.1f} {measured:>12}")
  lines += [f"  {r.name}: {r.detail}" for r in rows if r.detail]
  return "\n".join(lines)


def parse_variants(text: str) -> tuple[str, ...]:
  """"bp,sequential" -> ("bp", "sequential"), in VARIANTS order; ValueError naming the flag and
  the valid names for an unknown or empty list."""
  names = [v.strip() for v in text.split(",") if v.strip()]
  bad = [v for v in names if v not in VARIANTS]
  if bad or not names:
    raise ValueError(f"--variants={text!r}: choose from {', '.join(VARIANTS)} (comma-separated)")
  return tuple(v for v in VARIANTS if v in names)


def main(argv):
  from absl import app, flags
  flags_ = flags.FLAGS
  config = flags_.config
  config_validation.validate_config(config)
  try:
    variants = parse_variants(flags_.variants)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  if flags_.measure_variant:
    print(json.dumps({"measured": measure(config, flags_.measure_variant,
                                          flags_.device_memory_profile)}))
    return
  s = setup(config)
  print(f"{config.data.name} {'x'.join(map(str, s.image_shape))}, batch "
        f"{config.data.batch_size}, {jax.devices()[0].platform}; plan {s.plan.description} "
        f"({s.plan.num_modules} modules)")
  rows = memory_report(config, variants, execute=flags_.execute, argv=[
      a for a in sys.argv[1:] if not a.startswith(("--execute", "--variants"))])
  print(format_table(rows))
  if flags_.chart:
    from jax_local import plots
    from jax_local.analysis.run_records import method_label
    plots.memory_chart(flags_.chart, {method_label(config): {r.name: r.bytes for r in rows}},
                       f"{config.data.name}, {config.model.arch}{config.model.depth}, "
                       f"{s.plan.num_modules} modules, batch {config.data.batch_size}",
                       dpi=flags_.dpi)
    print(f"wrote {flags_.chart}")


if __name__ == "__main__":
  from absl import app, flags
  from ml_collections import config_flags
  from jax_local import plots
  config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
  flags.DEFINE_string("xla_dump_dir", "", "Write XLA dumps (HLO text, buffer assignment) here.")
  flags.DEFINE_bool("execute", False, "Also run each variant and report its measured peak.")
  flags.DEFINE_string("device_memory_profile", "",
                      "With --execute: write PREFIX.<variant>.prof (live arrays after a step).")
  flags.DEFINE_string("measure_variant", "", "Internal: measure one variant, print JSON.")
  flags.DEFINE_string("chart", "", "Also write a bar chart of the table to this file (+ CSV); "
                      "format from the extension: .pdf, .svg or .png.")
  flags.DEFINE_integer("dpi", plots.DPI, "Resolution of a PNG chart.")
  flags.DEFINE_string("variants", ",".join(VARIANTS),
                      "Comma-separated variants to compile (a subset of " + ", ".join(VARIANTS)
                      + "); ratios need bp.")
  flags.mark_flags_as_required(["config"])

  def _main(argv):
    if flags.FLAGS.xla_dump_dir:   # read when the backend starts, i.e. at the first compile
      os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_dump_to="
                                 f"{flags.FLAGS.xla_dump_dir} --xla_dump_hlo_as_text").strip()
    main(argv)

  from jax_local import usage_errors
  usage_errors.run(_main)   # user errors: one line, exit status 2
