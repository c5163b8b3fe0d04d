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
"""
from __future__ import annotations

from typing import Callable

import flax.linen as nn

from jax_local.plan import LossTerm, Plan

FINAL_HEAD = "final"
FINAL_X_LOSS = ("weighted", "dropped")


def hilo_heads_and_terms(plan: Plan, k: int, w_ind: float, w_cas: float,
                         ian: Callable[[int], nn.Module], can: Callable[[int], nn.Module],
                         final_x_loss: str = "weighted"):
  """(heads, terms) of the cascaded plan; ian(j) / can(j) build the heads of the terms at j."""
  L = plan.num_modules
  if not 2 <= k <= L:
    raise ValueError(f"cascade window k={k} needs 2 <= k <= number of modules ({L})")
  if final_x_loss not in FINAL_X_LOSS:
    raise ValueError(f"final_x_loss={final_x_loss!r} is unknown; valid: {', '.join(FINAL_X_LOSS)}")
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
