"""Base methods: which head and weight each module's independent term gets (docs/methods.md §5-§6).

- bp: one term spanning all modules, CE on the network's own classifier (§6.1).
- greedy: InfoPro's 0c1f head with CE on every module, weight 1 (§5.4).
- dgl: a DGL auxiliary classifier (`method.dgl_head`, §4.3) with CE, weight 1 (§5.4).
- infopro: decoder + classifier with the linear λ schedule of §5.1.
- predsim: (1-β)·CE(pooled prediction) + β·similarity matching (§4.4).
- auglocal: aux nets of fresh blocks mimicking later layers (§6.3, `jax_local.auglocal`).
Every local method trains the last module with CE on the network's classifier, weight 1.
`method_config.plugin` (hpff | mlaan | man) then rewrites the base plan (`jax_local.plugins`).
"""
from __future__ import annotations

import dataclasses

from jax_local import auglocal, plugins
from jax_local import heads as H
from jax_local.heads import imagenet as imagenet_heads
from jax_local.models.backbone import Backbone
from jax_local.plan import LossTerm, Plan, modules_from_ranges

METHODS = ("bp", "greedy", "dgl", "infopro", "predsim", "auglocal")
FINAL_HEAD = "final"


def local_head(method_config, module: int, num_modules: int, num_classes: int):
  """The auxiliary head of module `module` < num_modules - 1 for a base method."""
  name = method_config.name
  if name == "greedy":
    return H.ClassifierHead("0c1f", num_classes)
  if name == "dgl":
    return H.DGLHead(method_config.dgl_head, num_classes)
  if name == "infopro":
    ip = method_config.infopro
    lam_rec, lam_cls = H.infopro_lambdas(module, num_modules, ip.ixx_1, ip.ixy_1, ip.ixx_2,
                                         ip.ixy_2)
    # method.infopro.head_family: CIFAR heads (§4.1-4.2) or the ImageNet ones (§4.6)
    return imagenet_heads.infopro_head(ip, num_classes, lam_rec, lam_cls)
  if name == "predsim":
    ps = method_config.predsim
    return H.PredSimHead(num_classes=num_classes, beta=ps.beta, pool_target=ps.pool_target,
                         zero_init_pred=ps.zero_init_pred)
  raise ValueError(f"config.method.name={name!r} is unknown; valid: {', '.join(METHODS)}")


def build_plan(method_config, backbone: Backbone, split, num_classes: int) -> Plan:
  """The plan of a method on `backbone` cut by `split` (a jax_local.splits.Split), with its plugin.

  BP ignores the split's cuts: it is one module and one term over the whole network.
  """
  plan = _base_plan(method_config, backbone, split, num_classes)
  plan = plugins.apply_plugins(method_config, plan, split, num_classes)
  if method_config.get("replicate_bn_calls", True):
    # Q23: the references run a module once per term whose window holds it, and each
    # train-mode call updates its BN running statistics (docs/methods.md §1.2)
    plan = dataclasses.replace(
        plan, bn_updates=tuple(max(1, plan.num_terms_covering(m)) for m in range(plan.num_modules)))
  return plan


def _base_plan(method_config, backbone: Backbone, split, num_classes: int) -> Plan:
  if method_config.name == "bp":
    modules = (backbone.block_names,)
    terms = (LossTerm("bp", 0, 0, FINAL_HEAD, 1.0),)
    return Plan(backbone, modules, {FINAL_HEAD: H.LogitsCE()}, terms,
                description=f"bp: 1 module (end-to-end), {len(backbone.blocks)} blocks")
  if method_config.name == "auglocal":
    return auglocal.build_auglocal_plan(method_config, backbone, split, num_classes)
  if method_config.name not in METHODS:
    raise ValueError(f"config.method.name={method_config.name!r} is unknown; "
                     f"valid: {', '.join(METHODS)}")
  modules = modules_from_ranges(backbone, split.module_ranges)
  num_modules = len(modules)
  heads, terms = {}, []
  for i in range(num_modules - 1):
    heads[f"m{i}"] = local_head(method_config, i, num_modules, num_classes)
    terms.append(LossTerm(f"m{i}", i, i, f"m{i}", 1.0))
  heads[FINAL_HEAD] = H.LogitsCE()
  terms.append(LossTerm(FINAL_HEAD, num_modules - 1, num_modules - 1, FINAL_HEAD, 1.0))
  return Plan(backbone, modules, heads, tuple(terms),
              description=f"{method_config.name}: {split.describe()}")
