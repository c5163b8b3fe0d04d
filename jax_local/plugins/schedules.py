"""λ schedules of plug-in terms (docs/methods.md §5.1-§5.2; quirks Q5, Q6).

A plug-in term whose head reads the output of module j (0-based) gets the ratio r of `kind`; the
base turns it into its head's weights (`registry.Method.lambdas`; InfoPro's
λ_rec = ixx_1·(1−r) + ixx_2·r, λ_cls = ixy_1·(1−r) + ixy_2·r, the other bases CE alone):
- infopro_module: r = j/(L−2), the base InfoPro rule (§5.1); L = modules actually built.
- hpff_kcli (Q5, HPFF code): r = j/(K_cli−2), K_cli the paper's K (16/55 for L = 15/54), so r
  never reaches 1.
- man_stage (Q6, MAN and MLAAN-InfoPro code): r = s'/(K_cli−2), s' the stage number (1..3) of
  the block after module j (the first block of module j+1).
- hpff_fixed, man_stage_fixed: the fixed forms, r = j/(L−2) (equal to infopro_module).
  [decision] (docs/methods.md §5.2) a fix "module number/(L−1)" would not do: under convention B
  K_cli−2 = L−1, so that reading would equal the quirk itself; we take the reading that makes the
  last auxiliary term reach r = 1.
- constant: r = 0 (λ = ixx_1, ixy_1 everywhere).
Any denominator ≤ 0 gives r = 0.
"""
from __future__ import annotations

from jax_local.models.backbone import residual_position

KINDS = ("infopro_module", "hpff_kcli", "hpff_fixed", "man_stage", "man_stage_fixed", "constant")


def block_stage(name: str) -> int:
  """Stage number s of a residual block named "s{s}b{b}" (`models.backbone.residual_name`)."""
  pos = residual_position(name)
  if pos is None:
    raise ValueError(f"lambda schedule 'man_stage' needs block names s<s>b<b>, got {name!r}")
  return pos[0]


def _div(a, b):
  return a / b if b > 0 else 0.0


def ratio(kind: str, j: int, num_modules: int, paper_k: int, next_block: str | None = None):
  """r of the term reading module j's output; next_block: first block of module j+1 (man_stage)."""
  if kind in ("infopro_module", "hpff_fixed", "man_stage_fixed"):
    return _div(j, num_modules - 2)
  if kind == "hpff_kcli":
    return _div(j, paper_k - 2)
  if kind == "man_stage":
    return _div(block_stage(next_block), paper_k - 2)
  if kind == "constant":
    return 0.0
  raise ValueError(f"unknown lambda schedule {kind!r}; valid: {', '.join(KINDS)}")


def module_ratio(kind: str, plan, j: int, paper_k: int) -> float:
  """r of a term reading module j of `plan` under schedule `kind`."""
  nxt = plan.modules[j + 1][0] if j + 1 < plan.num_modules else None
  return ratio(kind, j, plan.num_modules, paper_k, nxt)
