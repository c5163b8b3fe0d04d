"""Plugins: enhancements that rewrite a base plan (docs/design.md §3; docs/methods.md §7-§9).

`config.method.plugin` picks one:
- "hpff": HiLo cascades (window `method.hilo.k`, default 2) with Patch Feature Fusion on the
  cascade heads (`method.pff`) — `hpff.apply_hpff`.
- "mlaan": multilaminar cascades (`method.mlm.k`, default 3) with Leap Augmented Modules on the
  cascade heads (`method.lam`) — `leap.apply_mlaan`.
- "man": momentum auxiliary network on every local term (`method.man`) — `momentum.apply_man`.
- "none": the base plan unchanged.
Every plugin composes with every local base in `BASES` (greedy, dgl, infopro, predsim); not with
bp (no local modules) nor auglocal (its aux nets already mimic later layers; no paper defines the
pair). `COMPOSES` is that matrix; config_validation enforces it. After initialising a plan's
state, `init_copies` sets block copies declared `copy_of_target` to their source's parameters.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jax_local.plan import Plan
from jax_local.plugins import hpff, leap, momentum
from jax_local.plugins.base_heads import BASES

PLUGINS = ("none", "hpff", "mlaan", "man")
COMPOSES = {"hpff": BASES, "mlaan": BASES, "man": BASES}
_APPLY = {"hpff": hpff.apply_hpff, "mlaan": leap.apply_mlaan, "man": momentum.apply_man}


def plugin_name(method_config) -> str:
  return method_config.get("plugin", "none") or "none"


def apply_plugins(method_config, plan: Plan, split, num_classes: int) -> Plan:
  """The plan of `method_config.plugin` applied to the base plan (identity for "none")."""
  name = plugin_name(method_config)
  if name == "none":
    return plan
  if name not in PLUGINS:
    raise ValueError(f"config.method.plugin={name!r} is unknown; valid: {', '.join(PLUGINS)}")
  if method_config.name not in COMPOSES[name]:
    raise ValueError(f"config.method.plugin={name!r} does not compose with base "
                     f"method.name={method_config.name!r}; it composes with "
                     f"{', '.join(COMPOSES[name])}")
  return _APPLY[name](method_config, plan, split, num_classes)


def _get(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def init_copies(plan: Plan, params):
  """Returns params with every copy a head declares in `copy_sources` (param name, source block)
  replaced by the source block's current (initial) parameters (`copy_init = copy_of_target`)."""
  heads = dict(params["heads"])
  for head_name, head in plan.heads.items():
    sources = getattr(head, "copy_sources", ())
    if not sources:
      continue
    hp = dict(heads[head_name])
    for copy, source in sources:
      src = params["backbone"][source]
      if jax.tree.structure(src) != jax.tree.structure(hp[copy]) or any(
          a.shape != b.shape for a, b in zip(jax.tree.leaves(src), jax.tree.leaves(hp[copy]))):
        raise ValueError(f"head {head_name}: copy {copy!r} does not match block {source!r}")
      hp[copy] = jax.tree.map(jnp.copy, src)   # own buffers: a state is donated leaf by leaf
    heads[head_name] = hp
  return {**params, "heads": heads}
