"""The sequential executor gives the fused executor's gradients and updates, plan by plan.

Tolerance: rtol 1e-5, atol 5e-6 (float32; both executors run the same operations, so they differ
by a few ulps). Both steps are taken at the initial parameters, where the gradients are well
conditioned: the second starts from the first step's optimizer state and step count but the
initial parameters and BN statistics. After one update of these tiny nets (batch of 8), the
gradient itself can be ill-conditioned: the fused step compiled twice (XLA optimisations on and
off) then disagrees far beyond these tolerances, and so do the two executors, on CPUs whose
vector width gives another reduction order (docs/design.md §3.7).
Compiled with most XLA optimisations off, as every test not marked `full_optimisation`
(tests/conftest.py).
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from jax_local import ema, experiment, heads, optim, part_optimizer, splits
from jax_local.engine import fused, schedule, sequential
from jax_local.heads.common import ce_and_metrics
from jax_local.models import build_backbone
from jax_local.models.cifar_resnet import BasicBlock
from jax_local.models.layers import Dense, global_avg_pool
from jax_local.plan import LossTerm
from jax_local.train_state import init_state
from tests import helpers
from tests import test_plugins_routing as plugin_routing

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)
TOL = dict(rtol=1e-5, atol=5e-6)



def _allclose(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, **TOL)


def _units(sched):
  """The schedule's calls cut into units: each starts with module i's forward (joint or not)."""
  units = []
  for c in sched.calls:
    if isinstance(c.program, (schedule.UnitSpec, schedule.ForwardSpec)):
      units.append([])
    elif isinstance(c.program, (schedule.EmaSpec, schedule.UpdateSpec)):
      break
    units[-1].append(c)
  return units


def _joint_units(plan):
  return [c for c in schedule.build(plan).calls if isinstance(c.program, schedule.UnitSpec)]


def _check_equivalent(plan, tx, state, config, split="auto"):
  batch = helpers.random_batch()
  seq = sequential.make_train_step(plan, tx, split)
  # the fused step in two jitted halves (what fused.make_train_step runs in one program), so
  # the gradient compiled for the comparison below also drives the fused steps
  batch01 = fused.forward.with_image01(batch, plan.normalisation)
  grad_fn = jax.jit(jax.grad(lambda p, s, b: fused.plan_loss(plan, p, s, b), has_aux=True))
  apply_fn = jax.jit(lambda st, g, aux: fused.apply_gradients(plan, tx, st, g, *aux))
  fus = lambda st, b: apply_fn(st, *grad_fn(st.params, st.batch_stats, b))

  g_fused, (stats_fused, _) = grad_fn(state.params, state.batch_stats, batch01)
  g_seq, stats_seq = seq.gradients(state, jax.device_put(batch))
  _allclose(g_seq, g_fused)
  _allclose(stats_seq["backbone"], stats_fused["backbone"])

  # two steps, each executor starting every step from the same state: the second from the first
  # step's optimizer state (momentum, step count) at the initial parameters and BN statistics
  current = state
  for _ in range(2):
    s_seq, m_seq = seq(jax.tree.map(jnp.copy, current), batch)
    s_fus, m_fus = fus(jax.tree.map(jnp.copy, current), batch01)
    assert sorted(m_seq) == sorted(m_fus)
    _allclose(m_seq, {k: m_fus[k] for k in m_seq})
    _allclose(s_seq, s_fus)
    current = s_fus.replace(params=state.params, batch_stats=state.batch_stats)
  assert int(current.step) == 2
  return seq


@pytest.mark.parametrize("method", ["bp", "greedy", "dgl", "infopro", "predsim", "auglocal"])
def test_bases_match_fused(method):
  config = helpers.tiny_config(method, preset="blocks_stem" if method == "auglocal" else
                               "uniform_k3")
  common.set_selected(config.method, auglocal=dict(aux_depth=1))  # aux nets copy one later block
  plan, tx, state = helpers.tiny_plan_and_state(config, normalisation=(MEAN, STD))
  seq = _check_equivalent(plan, tx, state, config)
  assert len(_units(seq.schedule)) == plan.num_modules


@pytest.mark.parametrize("base,plugin,fields", [
    ("dgl", "hpff", {}), ("infopro", "mlaan", {}), ("predsim", "man", {}),
    ("predsim", "mlaan", {"mlm.k": 2, "lam.ema_at": "all_layers"})])
def test_plugins_match_fused(base, plugin, fields):
  """HiLo (k=2) + PFF, multilaminar (k=3) + LAM (EMA copies), MAN (EMA copies); the copies of
  LAM and MAN run in programs of their own (trunk stages). The last case has a two-layer leap
  list (module 1: blocks 2.0, 3.0) with an EMA copy at both layers."""
  config = plugin_routing.plugin_config(base, plugin, **fields)
  plan, tx, state = plugin_routing.build(config, normalisation=(MEAN, STD))
  seq = _check_equivalent(plan, tx, state, config)
  assert any(t.first < t.last for t in plan.terms) == (plugin != "man")
  assert bool(plan.ema_pairs) == (plugin != "hpff")
  # heads holding block copies (LAM, MAN) ran as trunk stage forwards, inner head, stage backs
  labels = [c.label for c in seq.schedule.calls]
  assert any(c.startswith("trunk back 0") for c in labels) == (plugin != "hpff")
  assert any(c.startswith("trunk back 1") for c in labels) == ("mlm.k" in fields)


def _custom_state(config, plan):
  tx = part_optimizer.PartOptimizer(optim.make_optimizer(config.optim, config.num_epochs, 10),
                                    plan.ema_pairs)
  return tx, init_state(plan, tx, jax.random.PRNGKey(0), helpers.IMAGE_SHAPE)


@pytest.mark.parametrize("split", ["always", "never"])
def test_cascade_terms_and_shared_head_match_fused(split):
  """Windows {0,1}, {1,2} (HiLo-like) and {0,1,2} in one plan; the {1,2} and {0,1,2} terms
  share the network's classifier head."""
  config = helpers.tiny_config("dgl")
  plan, _, _ = helpers.tiny_plan_and_state(config, normalisation=(MEAN, STD))
  plan = dataclasses.replace(
      plan, heads={**plan.heads, "c01": heads.DGLHead("cnn", 4)},
      terms=plan.terms + (LossTerm("c01", 0, 1, "c01", 0.5), LossTerm("c12", 1, 2, "final", 0.3),
                          LossTerm("c012", 0, 2, "final", 0.2)))
  tx, state = _custom_state(config, plan)
  seq = _check_equivalent(plan, tx, state, config, split)
  backs = [[c.module for c in unit if isinstance(c.program, schedule.BackSpec)]
           for unit in _units(seq.schedule)]
  assert backs == ([[0], [1, 0], [2, 1, 0]] if split == "always" else [[], [0], [1, 0]])


class EmaCopyHead(nn.Module):
  """A frozen copy of a BasicBlock (parameters under stop_gradient), then GAP, Dense, CE."""
  features: int
  stride: int
  num_classes: int

  @nn.compact
  def __call__(self, h, batch, train=True):
    block = BasicBlock(self.features, self.stride, parent=None)
    copy = self.param("copy", lambda rng: block.init(rng, h, train=True)["params"])
    stats = self.variable("batch_stats", "copy",
                          lambda: block.init(jax.random.PRNGKey(0), h, train=True)["batch_stats"])
    y, new = block.apply({"params": jax.lax.stop_gradient(copy), "batch_stats": stats.value}, h,
                         train=True, mutable=["batch_stats"])
    if not self.is_initializing():
      stats.value = new["batch_stats"]
    return ce_and_metrics(Dense(self.num_classes)(global_avg_pool(y)), batch["label"])


def test_ema_copy_matches_fused():
  """Module 0's head holds an EMA copy of module 1's first block (MAN-like)."""
  config = helpers.tiny_config("dgl")
  plan, _, _ = helpers.tiny_plan_and_state(config, normalisation=(MEAN, STD))
  source = plan.modules[1][0]
  block = plan.backbone.module(source)
  plan = dataclasses.replace(
      plan, heads={**plan.heads, "m0": EmaCopyHead(block.features, block.stride, 4)},
      ema_pairs=(ema.EmaPair("m0", ("copy",), source, 0.9),))
  tx, state = _custom_state(config, plan)
  _check_equivalent(plan, tx, state, config)


def test_identical_modules_share_one_program():
  """ResNet-32 cut into one-block modules: one program per distinct (structure, shape)."""
  config = helpers.tiny_config("dgl", depth=32, preset="blocks")
  backbone = build_backbone(config.model, 4)
  plan = experiment.build_plan(config.method, backbone, splits.get_split("blocks", 32), 4)
  units = _joint_units(plan)
  assert len(units) == plan.num_modules
  # stem, s1 block, s2b0 (stride 2), s2 block, s3b0, s3 block, last (+fc)
  assert len({c.program for c in units}) == 7


def test_infopro_lambdas_are_arguments_not_programs():
  """InfoPro's λ change with the module index; they are passed in, so modules of equal shape
  still share one program (as many as DGL's, see above)."""
  config = helpers.tiny_config("infopro", depth=32, preset="blocks")
  backbone = build_backbone(config.model, 4)
  plan = experiment.build_plan(config.method, backbone, splits.get_split("blocks", 32), 4)
  units = _joint_units(plan)
  assert len({c.program for c in units}) == 7
  lambdas = {c.args[7] for c in units[:-1]}   # per head of the unit, its coefficients
  assert len(lambdas) == plan.num_modules - 1   # every module has its own (λ_rec, λ_cls)
