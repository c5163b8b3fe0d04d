"""Plug-ins: enhancements that rewrite a base's plan, one registered spec per file, selected by
`config.method.plugin` (docs/design.md §3; docs/methods.md §7-§9; the spec's shape:
`jax_local.registry.Plugin`).

- hpff: HiLo cascades with Patch Feature Fusion on the cascade heads (§7).
- mlaan: multilaminar cascades with Leap Augmented Modules on the cascade heads (§8).
- man: momentum auxiliary network on every local term (§9).
- none: the base plan unchanged.
Each composes with every base that has a local head (greedy, dgl, infopro, predsim); not with bp
(no local modules) nor auglocal (its aux nets already mimic later layers; no paper defines the
pair). After initialising a plan's state, `copies.init_copies` sets block copies declared
`copy_of_target` to their source's parameters.
"""
from jax_local.plugins import hpff, man, mlaan
from jax_local.registry import Plugin, Registry

NONE = Plugin("none", lambda mc, plan, split, num_classes, base: plan, composes=lambda base: True)
REGISTRY = Registry("method.plugin", (NONE, hpff.SPEC, mlaan.SPEC, man.SPEC))


def plugin_name(method_config) -> str:
  """`config.method.plugin`, "none" when absent or empty."""
  return method_config.get("plugin", "none") or "none"
