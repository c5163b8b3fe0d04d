"""Gradient routing of the plugins (HPFF, MLAAN, MAN), checked against per-term jax.grad.

For every term: backbone blocks get gradient exactly in modules first..last (a HiLo/MLM cascade
ending at j reaches modules j−k+1..j), its own head gets gradient, every other head gets exactly
zero, and EMA copies get exactly zero everywhere.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from configs import common
from jax_local import config_validation, experiment, optim, part_optimizer, splits
from jax_local.engine.fused import plan_loss
from jax_local.models import build_backbone
from jax_local.models.cifar_resnet import BasicBlock
from jax_local.plugins.copies import BlockSpec, apply_copy
from jax_local.train_state import init_state
from tests import helpers


def plugin_config(base, plugin, depth=8, preset="blocks_stem", **fields):
  """Tiny config of base × plugin; fields: dotted overrides under config.method, those of
  sections that base × plugin does not hold skipped."""
  c = helpers.tiny_config(base, depth, preset, plugin)
  # small heads compile fast; routing does not depend on them
  common.set_selected(c.method, infopro=dict(classifier="0c1f"))
  if base != "infopro" and plugin == "hpff":
    c.method.pff.mode, c.method.pff.patch_loop = "paper_shared_avg", "vmap"
  for key, value in fields.items():
    *path, leaf = key.split(".")
    if path and path[0] not in c.method:
      continue
    node = c.method
    for p in path:
      node = node[p]
    node[leaf] = value
  return c


def build(config, image_shape=helpers.IMAGE_SHAPE, steps_per_epoch=10, normalisation=None):
  """(plan, tx, state) of a tiny config, initialised by `init_state` (copy_of_target copies
  equal their sources)."""
  backbone = build_backbone(config.model, config.data.num_classes)
  split = splits.get_split(config.split.preset, config.model.depth)
  config_validation.validate_method(config.method, split)
  plan = experiment.build_plan(config.method, backbone, split, config.data.num_classes,
                               normalisation)
  tx = part_optimizer.PartOptimizer(
      optim.make_optimizer(config.optim, config.num_epochs, steps_per_epoch), plan.ema_pairs)
  return plan, tx, init_state(plan, tx, jax.random.PRNGKey(0), image_shape)


def _get(tree, path):
  for k in path:
    tree = tree[k]
  return tree


def _norm(tree):
  leaves = jax.tree.leaves(tree)
  return float(sum(jnp.sum(x ** 2) for x in leaves)) ** 0.5 if leaves else 0.0


def per_term_grads(plan, state, batch):
  """{term name: gradient of that term alone}, all from one jit."""
  def fn(params):
    loss = lambda p, term: plan_loss(plan, p, state.batch_stats, batch, [term])[0]
    return {t.name: jax.grad(loss)(params, t) for t in plan.terms}
  return jax.jit(fn)(state.params)


def check_routing(plan, grads):
  ema_paths = {(p.head, *p.path) for p in plan.ema_pairs}
  module_of = {b: i for i, m in enumerate(plan.modules) for b in m}
  for term in plan.terms:
    g = grads[term.name]
    for block, bg in g["backbone"].items():
      inside = term.first <= module_of[block] <= term.last
      assert (_norm(bg) > 0) == inside, (term.name, block, _norm(bg))
    for head, hg in g["heads"].items():
      own = {k: v for k, v in hg.items() if (head, k) not in ema_paths}
      for k in hg:
        if (head, k) in ema_paths:
          assert _norm(hg[k]) == 0.0, f"EMA copy {head}/{k} got gradient from {term.name}"
      if jax.tree.leaves(own):
        assert (_norm(own) > 0) == (head == term.head), (term.name, head, _norm(own))


@pytest.mark.parametrize("base,plugin,k", [("infopro", "hpff", 2), ("dgl", "mlaan", 3),
                                           ("predsim", "man", None)])
def test_plugin_routing(base, plugin, k):
  plan, _, state = build(plugin_config(base, plugin))
  grads = per_term_grads(plan, state, helpers.random_batch())
  check_routing(plan, grads)
  L = plan.num_modules
  if k:  # cascades end at j = k−1..L−1 and start at j−k+1; independents at j = k−1..L−2
    cas = sorted((t.first, t.last) for t in plan.terms if t.first < t.last)
    assert cas == [(j - k + 1, j) for j in range(k - 1, L)]
    ind = sorted(t.last for t in plan.terms if t.first == t.last and t.name != "final_x")
    assert ind == list(range(k - 1, L - 1))
    assert {t.name: t.weight for t in plan.terms}["final_x"] == 0.001
  else:
    assert [(t.first, t.last) for t in plan.terms] == [(i, i) for i in range(L)]
    assert [p.source for p in plan.ema_pairs] == [plan.modules[i + 1][0] for i in range(L - 1)]


def test_ema_branch_carries_gradient_to_backbone():
  """MAN++ with s = 0 uses only the EMA branch: the backbone still gets gradient, the EMA (and the
  now-unused LB) parameters get exactly zero."""
  plan, _, state = build(plugin_config("greedy", "man", preset="blocks",
                                       **{"man.variant": "manpp"}))
  params = state.params
  params["heads"]["m0"] = {**params["heads"]["m0"], "s": jnp.zeros(())}
  term = plan.terms[0]
  loss = lambda p, b: plan_loss(plan, p, state.batch_stats, b, [term])[0]
  g = jax.jit(jax.grad(loss))(params, helpers.random_batch())
  assert all(_norm(g["backbone"][b]) > 0 for b in plan.modules[0])
  assert _norm(g["heads"]["m0"]["ema"]) == 0.0 and _norm(g["heads"]["m0"]["lb"]) == 0.0
  assert _norm(g["heads"]["m0"]["s"]) > 0


@pytest.mark.parametrize("base", ["infopro", "dgl"])
def test_manpp_stem_module(base):
  """MAN++'s stem module (§9.3): the stem is its own module 0 whose term reaches the stem alone
  (through an EMA copy and a trainable copy of block 1.0), and module 1 no longer reaches it."""
  config = plugin_config(base, "man", preset="blocks",
                         **{"man.variant": "manpp", "man.stem_module": True})
  plan, _, state = build(config)
  split = splits.get_split("blocks", 8)
  assert plan.num_modules == split.num_modules + 1
  assert plan.modules[0] == ("stem",) and plan.modules[1][0] == "s1b0"
  assert [(t.first, t.last) for t in plan.terms] == [(i, i) for i in range(plan.num_modules)]
  assert plan.ema_pairs[0].head == "stem" and plan.ema_pairs[0].source == "s1b0"
  stem_head = plan.heads["stem"]
  if base == "infopro":   # the code's stem classifier, at the λ of ratio 0
    ip = config.method.infopro
    assert (stem_head.inner.classifier, stem_head.inner.loss_mode) == ("1c2f", "contrast")
    assert (stem_head.inner.lambda_rec, stem_head.inner.lambda_cls) == (ip.ixx_1, ip.ixy_1)
  grads = per_term_grads(plan, state, helpers.random_batch())
  check_routing(plan, grads)
  assert _norm(grads["stem"]["heads"]["stem"]["s"]) > 0


def test_stem_module_needs_manpp_and_a_merged_stem():
  with pytest.raises(ValueError, match="variant='manpp'"):
    build(plugin_config("dgl", "man", preset="blocks", **{"man.stem_module": True}))
  with pytest.raises(ValueError, match="first module holds the stem"):
    build(plugin_config("dgl", "man", preset="blocks_stem",
                        **{"man.variant": "manpp", "man.stem_module": True}))


class _FrozenBranch(nn.Module):
  @nn.compact
  def __call__(self, x):
    return apply_copy(self, "ema", BlockSpec.of(BasicBlock(8, 2)), x, True, frozen=True)


def test_frozen_copy_zero_param_grad_nonzero_input_grad():
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8, 4))
  m = _FrozenBranch()
  v = jax.jit(m.init)(jax.random.key(1, impl="unsafe_rbg"), x)
  f = lambda p, x: jnp.sum(m.apply({**v, "params": p}, x, mutable=["batch_stats"])[0] ** 2)
  gp, gx = jax.jit(jax.grad(f, argnums=(0, 1)))(v["params"], x)
  assert _norm(gp) == 0.0 and _norm(gx) > 0


def test_plan_shapes_published_splits():
  """Terms, EMA pairs and leap lists of the published ResNet-32 configs, built without init."""
  from configs import cifar
  from jax_local import experiment, splits
  from jax_local.models import build_backbone
  plans = {}
  for plugin in ("hpff", "mlaan", "man"):
    c = cifar.get_cifar_config("cifar10", 32, 16, "dgl", plugin)
    split = splits.get_split(c.split.preset, 32)
    plans[plugin] = experiment.build_plan(c.method, build_backbone(c.model, 10), split, 10)
    assert plans[plugin].num_modules == 15
  assert len(plans["hpff"].terms) == 2 * 13 + 2 and not plans["hpff"].ema_pairs
  mlaan, man = plans["mlaan"], plans["man"]
  assert len(mlaan.terms) == 2 * 12 + 2            # MLM k=3: terms at j = 2..13
  assert [p.source for p in mlaan.ema_pairs] == (   # first block of the published leap lists
      ["s2b0"] * 3 + ["s3b0"] * 5 + ["s3b1", "s3b2", "s3b3", "s3b4"])
  assert [len(mlaan.heads[f"cas{j}"].layers) for j in (2, 9, 10, 12, 13)] == [4, 4, 3, 2, 1]
  assert [p.source for p in man.ema_pairs] == [man.modules[i + 1][0] for i in range(14)]
  assert {p.decay for p in man.ema_pairs + mlaan.ema_pairs} == {0.995}


@pytest.mark.parametrize("depth,preset,lam_terms", [(32, "r32_k8_hpff", 5), (110, "r110_k32", 29),
                                                    (110, "r110_k55_hpff", 51)])
def test_published_leap_lists_build(depth, preset, lam_terms):
  """Every published CIFAR leap list fits its split (first block's input width = module output)."""
  from configs import cifar
  c = cifar.get_cifar_config("cifar10", depth, 16 if depth == 32 else 55, "greedy", "mlaan")
  c.split.preset = preset
  split = splits.get_split(preset, depth)
  plan = experiment.build_plan(c.method, build_backbone(c.model, 10), split, 10)
  assert len(plan.ema_pairs) == lam_terms == plan.num_modules - 3
  assert plan.heads[f"cas{plan.num_modules - 2}"].layers[-1].make().features == 64
