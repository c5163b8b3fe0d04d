"""Compile-only memory report (jax_local/memory.py): ordering on a small net, paper-size config.

Numbers are printed (pytest -s) so the test log records them.
"""
import pytest

from configs import cifar
from jax_local import memory, schedule_memory
from jax_local.engine import stages
from tests import helpers


def _report(config, variants):
  rows = memory.memory_report(config, variants=variants)
  print(memory.format_table(rows))
  return {r.name: r for r in rows}


@pytest.mark.full_optimisation
def test_sequential_below_fused_below_bp():
  """ResNet-14 cut into one-block modules, greedy heads, batch 256 at 32x32x3."""
  config = helpers.tiny_config("greedy", depth=14, preset="blocks")
  config.data.batch_size = 256
  rows = _report(config, ("bp", "fused", "sequential"))
  assert rows["sequential"].bytes < rows["fused"].bytes < rows["bp"].bytes
  # 6 units, then the optimizer step over 8 blocks and 6 heads: heads of equal shape share
  assert rows["sequential"].programs < rows["sequential"].calls


@pytest.mark.full_optimisation
def test_bp_remat_recomputes_each_block_in_the_backward_pass():
  """ResNet-8, batch 64: with the recomputation in the backward pass (on XLA:CPU, jax.checkpoint's
  barriers kept by `memory.KEEP_BARRIERS`) BP with remat holds each block's input instead of its
  residuals, well below BP; with the barriers dropped it stays at BP's level."""
  config = helpers.tiny_config("greedy", depth=8, preset="uniform_k3")
  config.data.batch_size = 64
  rows = _report(config, ("bp", "bp_remat"))
  assert rows["bp_remat"].bytes < 0.8 * rows["bp"].bytes


def test_rows_above_bp_say_why():
  rows = [memory.Row("bp", 100, 1.0), memory.Row("bp_remat", 90, 0.9),
          memory.Row("fused", 150, 1.5)]
  text = memory.format_table(rows)
  assert "  fused above bp: one backward pass over every term" in text
  assert "bp_remat above bp" not in text


@pytest.mark.full_optimisation
def test_report_applies_the_compute_dtype():
  """`model.dtype=bfloat16` reaches the compiled step. XLA:CPU converts bf16 convolutions to
  float32 and back, so on this backend the bf16 step can need more, not less; only the
  difference is asserted."""
  config = helpers.tiny_config("greedy", depth=8, preset="uniform_k3")
  config.data.batch_size = 256
  f32 = _report(config, ("bp",))["bp"].bytes
  config.model.dtype = "bfloat16"
  bf16 = _report(config, ("bp",))["bp"].bytes
  assert bf16 != f32


def test_report_runs_for_resnet110_k55_without_executing():
  """The paper's split (54 modules) at batch 16 instead of 1024, compiled without XLA's
  optimisations (tests/conftest.py) and without the BP row (a code path the small-net test
  covers), to keep compile time small; its numbers are not asserted, only that it runs."""
  config = cifar.get_config("cifar10,110,55,predsim")
  config.data.batch_size = 16
  (row,) = memory.memory_report(config, variants=("sequential",))
  print(memory.format_table([row]))
  # 54 units share 8 programs; the optimizer step over 56 blocks and 55 heads, 10
  assert row.programs <= 20 and row.calls > 150
  assert row.bytes > 0 and row.measured is None and "peak at" in row.detail


def _pipelined_config(stages, microbatches, boundaries=()):
  """ResNet-8 in 3 modules, DGL heads, batch 32 at 32x32x3."""
  config = helpers.tiny_config("dgl", depth=8, preset="uniform_k3")
  config.data.batch_size = 32
  config.pipeline.update(stages=stages, microbatches=microbatches, boundaries=boundaries,
                         mode="sync")
  return config


def test_pipelined_row_holds_each_stage_s_parts_and_micro_batches():
  """2 stages cut before module 1, 2 micro-batches: each stage holds the state of its own parts
  (its modules' blocks, the heads of the terms ending there; the step counter on the last), and
  its peak, at half the batch and part of the state, is below the sequential executor's."""
  config = _pipelined_config(2, 2, (1,))
  rows = _report(config, ("sequential", "pipelined"))
  pipe = rows["pipelined"]
  assert len(pipe.peaks) == 2 and pipe.bytes == max(k.bytes for k in pipe.peaks)
  s = memory.setup(config)
  state, _ = memory.abstract_inputs(s.plan, s.tx, s.image_shape, 32)
  stage_of = stages.stage_of((1,), s.plan.num_modules)
  parts = [{("backbone", b) for m, blocks in enumerate(s.plan.modules) for b in blocks
            if stage_of[m] == p}
           | {("heads", t.head) for t in s.plan.terms if stage_of[t.last] == p} for p in (0, 1)]
  expected = [schedule_memory.tree_bytes(
      [getattr(state, f)[top][name] for f in ("params", "opt_state", "batch_stats")
       for top, name in parts[p]], [state.step] if p == 1 else []) for p in (0, 1)]
  assert [k.state for k in pipe.peaks] == expected
  assert sum(expected) == schedule_memory.tree_bytes(state)
  assert all(k.bytes < rows["sequential"].bytes for k in pipe.peaks)


def test_pipelined_row_with_one_stage_is_the_sequential_step_plus_the_batch_slice():
  """S = 1, M = 1: the same calls and programs as the sequential step; the peak call also holds
  the slice's outputs, a copy of the batch (images, labels) and of its images as a_0."""
  config = _pipelined_config(1, 1)
  rows = _report(config, ("sequential", "pipelined"))
  (seq,), (pipe,) = rows["sequential"].peaks, rows["pipelined"].peaks
  assert seq.call == "unit 0" and pipe.call == "unit 0 @0"
  assert (pipe.program, pipe.state) == (seq.program, seq.state)
  image, label = 32 * 32 * 32 * 3 * 4, 32 * 4
  assert pipe.held - seq.held == 2 * image + label
  assert pipe.bytes - seq.bytes == 2 * image + label


def test_setup_knows_imagenet_shapes():
  """ImageNet configs are reported at their own image size and normalisation (no data needed)."""
  from configs import imagenet_r101_k4
  from jax_local.data import imagenet
  config = imagenet_r101_k4.get_config()
  s = memory.setup(config)
  assert s.image_shape == (224, 224, 3)
  assert s.plan.normalisation == s.bp_plan.normalisation == (imagenet.MEAN, imagenet.STD)
  assert s.plan.num_modules == 4 and s.bp_plan.num_modules == 1
  config.data.image_size = 160
  assert memory.setup(config).image_shape == (160, 160, 3)


def test_variants_flag_parses_and_refuses_unknown_names():
  assert memory.parse_variants("sequential,bp") == ("bp", "sequential")
  config = helpers.tiny_config("dgl")
  assert memory.default_variants(config) == ("bp", "bp_remat", "fused", "sequential")
  config.executor = "pipelined"
  assert memory.default_variants(config) == memory.VARIANTS
  assert memory.parse_variants(",".join(memory.VARIANTS)) == memory.VARIANTS
  for bad in ("bp,remat", "", ","):
    with pytest.raises(ValueError,
                       match="--variants=.*bp, bp_remat, fused, sequential, pipelined"):
      memory.parse_variants(bad)
