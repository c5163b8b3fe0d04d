"""hpff: HiLo cascades + Patch Feature Fusion on the cascade heads (docs/methods.md §7.1-§7.4).

Terms as `hilo.hilo_heads_and_terms` with window `hilo.k` (2) and weights 0.001/0.999. Heads:
IAN_j = the base's head at (λ_rec, λ_cls) = (0, 1) (InfoPro: its classifier alone, CE, weight
1); CAN_j = the base's head at the λ of `hilo.lambda_schedule` (default hpff_kcli, quirk Q5)
with PFF per `method.pff` (`plugins.pff`):
- mode off: the CAN unpatched;
- a base whose head has no decoder (DGL, PredSim, Greedy, the ImageNet InfoPro heads): the whole
  CAN runs per patch, `paper_shared_avg` on the classifier (§7.4 [decision]);
- the CIFAR InfoPro heads: `code_quadrant_decoders` = λ_rec·(four quadrant decoders) + the
  classifier at λ_cls; `paper_shared_avg` patches the decoder, the classifier or both (`apply_to`).
Sections `method.hilo` (`hilo.section`) and `method.pff` (mode, grid, apply_to, patch_loop).
Composes with every base that has a local head.
"""
from __future__ import annotations

import dataclasses

import ml_collections

from jax_local import config_errors
from jax_local.config_errors import ConfigError
from jax_local.methods import infopro
from jax_local.plan import Plan
from jax_local.plugins import hilo, pff, schedules
from jax_local.registry import Plugin


def defaults():
  return {
      "hilo": hilo.section(k=2, lambda_schedule="hpff_kcli",   # quirk Q5
                           final_x_loss="weighted"),
      "pff": ml_collections.ConfigDict({                       # quirk Q12
          "mode": "code_quadrant_decoders",   # | paper_shared_avg | off
          "grid": (2, 2),
          "apply_to": "classifier",           # paper_shared_avg: decoder | classifier | both
          "patch_loop": "scan",               # paper_shared_avg: vmap | scan | unrolled
      }),
  }


def validate(mc, split, base) -> None:
  hilo.validate("hilo", mc.hilo, split)
  f = mc.pff
  config_errors.choice("method.pff.mode", f.mode, pff.MODES)
  config_errors.choice("method.pff.apply_to", f.apply_to, pff.APPLY_TO)
  config_errors.choice("method.pff.patch_loop", f.patch_loop, pff.LOOPS)
  grid = tuple(f.grid)
  if len(grid) != 2 or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in grid):
    raise ConfigError(f"config.method.pff.grid={grid!r} must be two ints >= 1, e.g. (2, 2) "
                      "or (2, 1)")
  if not base.has_decoder(mc) and f.mode != "off" and (f.mode == "code_quadrant_decoders" or
                                                      f.apply_to == "decoder"):
    raise ConfigError(
        f"config.method.pff.mode={f.mode!r} (apply_to={f.apply_to!r}) patches a CIFAR InfoPro "
        f"decoder, but the head of base {base.name!r} has none; use "
        "pff.mode='paper_shared_avg' with pff.apply_to='classifier' (docs/methods.md §7.4) or "
        "pff.mode='off'")


def cascade_head(mc, base, num_classes: int, lam):
  """CAN: the base's head at lam = (λ_rec, λ_cls) with PFF per `method.pff` (module docstring)."""
  f = mc.pff
  patch = lambda inner: pff.PatchHead(inner, tuple(f.grid), f.patch_loop)
  if f.mode == "off":
    return base.head(mc, num_classes, lam)
  if not base.has_decoder(mc):
    return patch(base.head(mc, num_classes, lam))
  lam_rec, lam_cls = lam
  cls = base.head(mc, num_classes, (0.0, lam_cls))
  if f.mode == "code_quadrant_decoders":
    if lam_rec == 0:
      return cls
    decoders = pff.QuadrantDecoderHead(lam_rec, bce_torch_clamp=infopro.torch_bce(mc.infopro))
    return pff.SumHead((decoders, cls), ("dec", "cls"))
  if f.apply_to == "both":
    return patch(base.head(mc, num_classes, lam))
  dec = base.head(mc, num_classes, (lam_rec, 0.0))
  if f.apply_to == "decoder":
    return pff.SumHead((patch(dec), cls), ("dec", "cls"))
  return pff.SumHead((dec, patch(cls)), ("dec", "cls"))


def rewrite(mc, plan: Plan, split, num_classes: int, base) -> Plan:
  h = mc.hilo
  lam_of = lambda j: base.lambdas(
      mc, schedules.module_ratio(h.lambda_schedule, plan, j, split.paper_k))
  heads, terms = hilo.hilo_heads_and_terms(
      plan, h.k, h.w_ind, h.w_cas, lambda j: base.head(mc, num_classes),
      lambda j: cascade_head(mc, base, num_classes, lam_of(j)), h.final_x_loss)
  desc = f"{plan.description} + HPFF (HiLo k={h.k}, PFF {mc.pff.mode})"
  return dataclasses.replace(plan, heads=heads, terms=terms, description=desc)


SPEC = Plugin("hpff", rewrite, defaults, validate)
