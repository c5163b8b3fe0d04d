"""Compile-only memory report (jax_local/memory.py): ordering on a small net, paper-size config.

Numbers are printed (pytest -s) so the test log records them.
"""
import jax
import pytest

from configs import cifar
from jax_local import memory
from tests import helpers


def _report(config, variants):
  rows = memory.memory_report(config, variants=variants)
  print(memory.format_table(rows))
  return {r.name: r for r in rows}


def test_sequential_below_fused_below_bp():
  """ResNet-14 cut into one-block modules, greedy heads, batch 256 at 32x32x3."""
  config = helpers.tiny_config("greedy", depth=14, preset="blocks")
  config.data.batch_size = 256
  rows = _report(config, ("bp", "fused", "sequential"))
  assert rows["sequential"].bytes < rows["fused"].bytes < rows["bp"].bytes
  # 6 units, then the optimizer step over 8 blocks and 6 heads: heads of equal shape share
  assert rows["sequential"].programs < rows["sequential"].calls


def test_report_applies_the_compute_dtype():
  """`model.dtype=bfloat16` reaches the compiled step. XLA:CPU converts bf16 convolutions to
  float32 and back, so on this backend the bf16 step needs more, not less (ResNet-8, batch 256:
  305 vs 272 MB); only the difference is asserted."""
  config = helpers.tiny_config("greedy", depth=8, preset="uniform_k3")
  config.data.batch_size = 256
  f32 = _report(config, ("bp",))["bp"].bytes
  config.model.dtype = "bfloat16"
  bf16 = _report(config, ("bp",))["bp"].bytes
  assert bf16 != f32


@pytest.fixture
def unoptimised_compiles():
  """XLA optimisations off for one test (its numbers are not asserted, only that it runs)."""
  old = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", old)


def test_report_runs_for_resnet110_k55_without_executing(unoptimised_compiles):
  """The paper's split (54 modules) at batch 16 instead of 1024, compiled without XLA's
  optimisations and without the BP row (27 s of compile for a code path the small-net test
  covers), to keep compile time small."""
  config = cifar.get_config("cifar10,110,55,predsim")
  config.data.batch_size = 16
  (row,) = memory.memory_report(config, variants=("sequential",))
  print(memory.format_table([row]))
  # 54 units share 8 programs; the optimizer step over 56 blocks and 55 heads, 10
  assert row.programs <= 20 and row.calls > 150
  assert row.bytes > 0 and row.measured is None and "peak at" in row.detail


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
  assert memory.parse_variants(",".join(memory.VARIANTS)) == memory.VARIANTS
  for bad in ("bp,remat", "", ","):
    with pytest.raises(ValueError, match="--variants=.*bp, bp_remat, fused, sequential"):
      memory.parse_variants(bad)
