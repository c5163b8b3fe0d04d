"""XLA memory report: BP, BP with remat, and the fused, sequential and pipelined executors of a
config.

  python -m jax_local.memory --config=configs/X.py [--config.data.batch_size=N]
      [--variants=bp,sequential,pipelined] [--config.pipeline.stages=S ...]
      [--xla_dump_dir=DIR] [--execute] [--device_memory_profile=PREFIX]
      [--chart=PATH.pdf|.svg|.png] [--dpi=N]

Compile-only (abstract shapes from `jax.eval_shape`, nothing allocated), so paper sizes can be
reported on a CPU. Every number is, per jitted program,
    argument + output - alias + temp        (from `compiled.memory_analysis()`)
of one whole training step (gradients, optimizer update, EMA) in the config's compute dtype
(`model.dtype`), arguments = state + batch:
  bp          the config's backbone trained end to end (the BP plan), fused executor
  bp_remat    the same with `jax.checkpoint` around every block (on XLA:CPU with its
              optimization barriers kept to the end: KEEP_BARRIERS, docs/design.md §5)
  fused       the config's plan, one jitted step (engine/fused.py)
  sequential  the config's plan, one jitted program per call of its schedule
              (engine/schedule.py). Every program is compiled for abstract arguments; at each
              call the schedule says which named values the driver holds (`live_during`: state,
              gradient buffers written so far, saved detached activations, cascade cotangents,
              new statistics and metrics so far, batch; the call's arguments are among them;
              each buffer once), and the call adds its program's output - alias + temp. The
              row is the max over calls (`schedule_memory.peaks`).
  pipelined   the config's plan on the stages of its `pipeline` section (stages, boundaries,
              mode, microbatches; engine/pipeline_schedule.py): the same walk over the
              pipelined schedule, every value held on one stage (its writer's), every call run
              on its module's stage; per stage its peak (its parts' state, the micro-batches'
              values it holds, its programs at micro-batch size); the row is the largest stage.
Rows above bp get a line saying why (ABOVE_BP).
With --execute each variant but pipelined (it needs a device per stage) also runs (two steps, in
a fresh subprocess) and reports the measured peak: `peak_bytes_in_use` on GPU/TPU; on CPU the
process's RSS high-water mark during the second step minus the RSS before it, plus the bytes of
state and batch (so it is comparable with the compile-time number). The CPU numbers hold for
large buffers only.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import optax

from jax_local import config_validation, experiment, parallel, schedule_memory
from jax_local.engine import forward, fused, pipeline_schedule, pipelined, sequential, stages
from jax_local.models import layers
from jax_local.models.backbone import apply_block
from jax_local.train_state import init_state

VARIANTS = ("bp", "bp_remat", "fused", "sequential", "pipelined")
COMPILE_ONLY = ("pipelined",)   # not run by --execute: it needs a device per stage
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
  peaks: tuple = ()             # sequential: its `schedule_memory.Peak`; pipelined: per stage


def program_bytes(compiled) -> int:
  """argument + output - alias + temp of a compiled program."""
  m = compiled.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes)


@dataclasses.dataclass
class Setup:
  plan: object
  bp_plan: object
  tx: object
  bp_tx: object
  image_shape: tuple
  split: object
  pipeline: dict    # the config's `pipeline` section (the pipelined row)


def setup(config) -> Setup:
  """A validated config's plan and BP's plan on the same backbone and input normalisation
  (`experiment.build`, without data)."""
  exp = experiment.build(config)
  bp_method = experiment.method_config("bp")
  bp_plan = experiment.build_plan(bp_method, exp.backbone, exp.split, exp.dataset.num_classes,
                                  exp.plan.normalisation)
  return Setup(exp.plan, bp_plan, exp.tx, exp.base_tx, exp.dataset.image_shape, exp.split,
               dict(config.get("pipeline", {})))


def abstract_inputs(plan, tx, image_shape, batch_size):
  """(state, batch) as ShapeDtypeStructs: nothing is allocated."""
  state = jax.eval_shape(lambda: init_state(plan, tx, jax.random.PRNGKey(0), image_shape))
  batch = {"image": jax.ShapeDtypeStruct((batch_size, *image_shape), jnp.float32),
           "label": jax.ShapeDtypeStruct((batch_size,), jnp.int32)}
  return state, batch


# XLA:CPU drops optimization barriers before CSE and scheduling, so `jax.checkpoint`'s
# recomputation is merged into or scheduled with the forward pass (docs/design.md §5); without
# this pass the barriers stay to code generation, where they are no-ops.
KEEP_BARRIERS = {"xla_disable_hlo_passes": "cse_barrier_expander"}


def make_bp_remat_step(plan, tx):
  """BP with `jax.checkpoint` around every block; `plan` is a one-term BP plan. On XLA:CPU
  compiled with KEEP_BARRIERS, so the recomputation stays in the backward pass."""
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

  return jax.jit(step, donate_argnums=0,
                 compiler_options=KEEP_BARRIERS if jax.default_backend() == "cpu" else None)


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
    elif variant == "sequential":
      step = sequential.make_train_step(s.plan, s.tx)
      compiled = schedule_memory.ProgramCompiler()
      step.run(state, batch, compiled)
      (peak,) = schedule_memory.peaks(
          step.schedule, sequential.step_inputs(step.schedule, state, batch), compiled).values()
      largest = max(args + extra for extra, args, _ in compiled.calls)
      row = Row(variant, peak.bytes, programs=len(compiled.cache), calls=len(compiled.calls),
                peaks=(peak,),
                detail=(f"peak at {peak.call} of {len(compiled.calls)} calls: host-held "
                        f"{peak.held / MIB:.1f} MiB ({_kinds(peak)}; overlaps counted once) + "
                        f"program out-alias+temp {peak.program / MIB:.1f} MiB; largest program "
                        f"alone (arg+out-alias+temp) {largest / MIB:.1f} MiB"))
    else:
      row = _pipelined_row(s, state, batch)
  row.compile_s = time.time() - t0
  return row


def _kinds(peak: schedule_memory.Peak) -> str:
  return ", ".join(f"{n} {v / MIB:.1f}" for n, v in peak.kinds.items() if v)


def _pipelined_row(s: Setup, state, batch) -> Row:
  """Per stage of the config's pipeline, its peak (`schedule_memory.peaks` with the stage that
  holds each value, `pipeline_schedule.holders`, and the stage of each call's module); the
  row's bytes: the largest stage's. Balanced boundaries are found as the executor finds them
  (FLOPs of the programs at the micro-batch's shapes)."""
  step = pipelined.make_train_step(s.plan, s.tx, s.pipeline)
  compiled = schedule_memory.ProgramCompiler()
  step.walk(state, batch, compiled)
  stage = stages.stage_of(step.boundaries, s.plan.num_modules)
  holder = pipeline_schedule.holders(step.schedule, stage)
  found = schedule_memory.peaks(step.schedule,
                                sequential.step_inputs(step.schedule, state, batch), compiled,
                                holder.__getitem__, lambda c: stage[c.module])
  per_stage = tuple(found[p] for p in range(step.num_stages))
  size = batch["label"].shape[0] // step.microbatches
  lines = [f"{step.num_stages} stages cut before module(s) {list(step.boundaries)}, "
           f"{step.mode}, {step.microbatches} micro-batches of {size}; per stage, its peak = "
           "held (by kind) + its program at the peak call, and its parts' state:"]
  lines += [f"    stage {p}: {k.bytes / MIB:.1f} MiB at {k.call} = held {k.held / MIB:.1f} "
            f"({_kinds(k)}) + program {k.program / MIB:.1f}; parts' state {k.state / MIB:.1f}"
            for p, k in enumerate(per_stage)]
  return Row("pipelined", max(k.bytes for k in per_stage), programs=len(compiled.cache),
             calls=len(compiled.calls), detail="\n".join(lines), peaks=per_stage)


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
    return (_rss_kib("VmHWM") - before) * 1024 + schedule_memory.tree_bytes(state, batch)
  return jax.devices()[0].memory_stats()["peak_bytes_in_use"]


def memory_report(config, variants=None, execute: bool = False, argv=()) -> list[Row]:
  """One Row per variant (None: `default_variants`) at the config's batch size; ratios to the
  "bp" row if present.

  execute: also measure each variant in a fresh subprocess of this module, started with
  `argv` (the command-line flags, so the subprocess sees the same config).
  """
  variants = default_variants(config) if variants is None else variants
  s = setup(config)
  if "pipelined" in variants:   # one device per stage
    config_validation.validate_pipeline(config, s.split, s.pipeline.get("stages", 2))
  with layers.policy(compute_policy(config)):
    rows = [_analyse(v, s, config.data.batch_size) for v in variants]
  bp = next((r.bytes for r in rows if r.name == "bp"), None)
  # fixed mmap threshold: freed large buffers go back to the OS, so RSS follows live buffers
  env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
  for r in rows:
    r.ratio = r.bytes / bp if bp else float("nan")
    if execute and r.name not in COMPILE_ONLY:
      out = subprocess.run([sys.executable, "-m", "jax_local.memory", *argv,
                            f"--measure_variant={r.name}"], capture_output=True, text=True,
                           check=True, env=env).stdout
      r.measured = json.loads(out.strip().splitlines()[-1])["measured"]
  return rows


# why a row can need more than BP, printed under the table for rows with ratio > 1
ABOVE_BP = {
    "bp_remat": "the recomputed blocks' values are held with the forward pass's: XLA dropped "
                "jax.checkpoint's optimization barriers before scheduling (XLA:CPU without "
                "KEEP_BARRIERS; docs/design.md §5)",
    "fused": "one backward pass over every term keeps every module's and head's residuals until "
             "it runs (docs/design.md §3.5, §5)",
    "sequential": "the values the host holds plus the peak call's program (detail line) exceed "
                  "BP's one program (docs/design.md §5)",
    "pipelined": "the largest stage's held values plus its program (detail lines) exceed BP's "
                 "one program (docs/design.md §5)",
}


def format_table(rows) -> str:
  lines = [f"{'variant':<11} {'MiB':>9} {'ratio':>6} {'programs':>8} {'compile_s':>9} "
           f"{'measured MiB':>12}"]
  for r in rows:
    measured = "n/a" if r.measured is None else f"{r.measured / MIB:.1f}"
    lines.append(f"{r.name:<11} {r.bytes / MIB:9.1f} {r.ratio:6.3f} {r.programs:8d} "
                 f"{r.compile_s:9.1f} {measured:>12}")
  lines += [f"  {r.name}: {r.detail}" for r in rows if r.detail]
  lines += [f"  {r.name} above bp: {ABOVE_BP[r.name]}" for r in rows if r.ratio > 1]
  return "\n".join(lines)


def default_variants(config) -> tuple[str, ...]:
  """Every variant; `pipelined` only when the config trains with that executor, as its
  `pipeline` section (stages, micro-batches dividing the batch) matters only then."""
  return tuple(v for v in VARIANTS if v != "pipelined" or config.executor == "pipelined")


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
    variants = parse_variants(flags_.variants) if flags_.variants else default_variants(config)
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
  flags.DEFINE_string("variants", "",
                      "Comma-separated variants to compile (a subset of " + ", ".join(VARIANTS)
                      + "); ratios need bp. Default: all, pipelined only for a config with "
                      "executor=pipelined.")
  flags.mark_flags_as_required(["config"])

  def _main(argv):
    if flags.FLAGS.xla_dump_dir:   # read when the backend starts, i.e. at the first compile
      os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_dump_to="
                                 f"{flags.FLAGS.xla_dump_dir} --xla_dump_hlo_as_text").strip()
    main(argv)

  from jax_local import usage_errors
  usage_errors.run(_main)   # user errors: one line, exit status 2
