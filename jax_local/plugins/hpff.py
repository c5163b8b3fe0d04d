"""HPFF: HiLo cascades + Patch Feature Fusion on the cascade heads (docs/methods.md §7.1-§7.4).

Terms as `hilo.hilo_heads_and_terms` with window `hilo.k` (2) and weights 0.001/0.999. Heads per
base (`base_heads`): IAN_j = the independent head (InfoPro: classifier alone, CE, weight 1);
CAN_j = the base head at the InfoPro λ of `hilo.lambda_schedule` (default hpff_kcli, quirk Q5)
with PFF per `method.pff` (InfoPro default code_quadrant_decoders; DGL/PredSim/Greedy have no
decoder, so paper_shared_avg on the classifier, §7.4 [decision]).
"""
from __future__ import annotations

import dataclasses

from jax_local.plan import Plan
from jax_local.plugins import base_heads, hilo, schedules


def apply_hpff(mc, plan: Plan, split, num_classes: int) -> Plan:
  h = mc.hilo
  lam_of = lambda j: schedules.module_lambdas(h.lambda_schedule, mc.infopro, plan, j, split.paper_k)
  heads, terms = hilo.hilo_heads_and_terms(
      plan, h.k, h.w_ind, h.w_cas, lambda j: base_heads.independent(mc, num_classes),
      lambda j: base_heads.cascade(mc, num_classes, lam_of(j), mc.pff), h.final_x_loss)
  desc = f"{plan.description} + HPFF (HiLo k={h.k}, PFF {mc.pff.mode})"
  return dataclasses.replace(plan, heads=heads, terms=terms, description=desc)
