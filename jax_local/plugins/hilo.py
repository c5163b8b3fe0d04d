"""HiLo / multilaminar cascades: independent + overlapping cascade terms (docs/methods.md §7.1, §8.1).

For a plan with L modules and window k (2: HPFF's HiLo; 3: MLAAN's MLM), the terms are
  for j = k−1 .. L−2:  ind_j = w_ind · IAN_j(E_j(sg a_j))                       (first = last = j)
                       cas_j = w_cas · CAN_j(E_j(…E_{j−k+1}(sg a_{j−k+1})))      (first = j−k+1)
  final_x = w_ind · CE(fc(E_{L−1}(sg a_{L−1})))
  final_y = w_cas · CE(fc(E_{L−1}(…E_{L−k}(sg a_{L−k}))))
with w_ind = 0.001, w_cas = 0.999 (the reference's loss weights, §7.1). Windows overlap: module j
is reached by ind_j and by the k cascades ending at j..j+k−1. The first k−1 modules get no
independent-only term (as the reference: their IAN would be unused); they and the stem (inside
module 0 in convention B) learn through the cascades only. `final_x_loss = "dropped"` (quirk Q8,
MLAAN CIFAR code) keeps only final_y, with weight 1. Terms of weight 0 (w_ind = 0: HPFF's
cascade-only ImageNet code) and their heads are not built (unused heads must not exist, §1.6.4).
A cascade section of the config (HPFF's `method.hilo`, MLAAN's `method.mlm`) holds k, w_ind,
w_cas, final_x_loss and the λ schedule of the terms' heads (`plugins.schedules`).
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn
import ml_collections

from jax_local import config_errors
from jax_local.plan import FINAL_HEAD, LossTerm, Plan
from jax_local.plugins import schedules

FINAL_X_LOSS = ("weighted", "dropped")


def section(k: int, lambda_schedule: str, final_x_loss: str) -> ml_collections.ConfigDict:
  """A cascade section with the reference's loss weights (w_ind, w_cas) = (0.001, 0.999)."""
  return ml_collections.ConfigDict({"k": k, "w_ind": 0.001, "w_cas": 0.999,
                                    "lambda_schedule": lambda_schedule,
                                    "final_x_loss": final_x_loss})


def validate(name: str, c, split) -> None:
  """Checks the cascade section `config.method.<name>` against the split's module count."""
  config_errors.integer(f"method.{name}.k", c.k, 2, split.num_modules,
                        f" (the number of modules of split {split.name!r})")
  config_errors.unit(f"method.{name}.w_ind", c.w_ind)
  config_errors.unit(f"method.{name}.w_cas", c.w_cas)
  config_errors.choice(f"method.{name}.lambda_schedule", c.lambda_schedule, schedules.KINDS)
  config_errors.choice(f"method.{name}.final_x_loss", c.final_x_loss, FINAL_X_LOSS)


def hilo_heads_and_terms(plan: Plan, k: int, w_ind: float, w_cas: float,
                         ian: Callable[[int], nn.Module], can: Callable[[int], nn.Module],
                         final_x_loss: str = "weighted"):
  """(heads, terms) of the cascaded plan; ian(j) / can(j) build the heads of the terms at j."""
  L = plan.num_modules
  heads, terms = {}, []
  for j in range(k - 1, L - 1):
    if w_ind:
      heads[f"ind{j}"] = ian(j)
      terms.append(LossTerm(f"ind{j}", j, j, f"ind{j}", w_ind))
    if w_cas:
      heads[f"cas{j}"] = can(j)
      terms.append(LossTerm(f"cas{j}", j - k + 1, j, f"cas{j}", w_cas))
  heads[FINAL_HEAD] = plan.heads[FINAL_HEAD]
  if final_x_loss == "weighted" and w_ind:
    terms.append(LossTerm("final_x", L - 1, L - 1, FINAL_HEAD, w_ind))
    terms.append(LossTerm("final_y", L - k, L - 1, FINAL_HEAD, w_cas))
  else:
    terms.append(LossTerm("final_y", L - k, L - 1, FINAL_HEAD, 1.0))
  return heads, tuple(terms)
