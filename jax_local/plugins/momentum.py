"""MAN / MAN++: momentum auxiliary network (methods.md §9.1, §9.3; quirks Q6, Q14, Q18).

For every module i < L−1, with B the first block of module i+1 (the "next block"):
  man:   y = LB_i(h) + EMA_i(h)                    (bias_form "parallel_block", the code)
  manpp: y = s_i·LB_i(h) + (2 − s_i)·EMA_i(h)       (learnable scalar s_i, initialised to 1)
  param_offset: y = B(sg(θ_EMA) + b_i)(h)           ([decision] methods.md §9.1, b_i init 0)
then the base's head at B's output width; h = E_i(sg a_i) [N,H,W,C]. LB_i is a trainable copy of
B; EMA_i is frozen and updated after each step as EMA_i ← m·EMA_i + (1−m)·θ_B (pre-step), m = 0.995.
The real B gets nothing from this term; the gradient flows through both branches into E_i.
`man.copy_init`: independent (the code, Q14: LB and EMA are fresh draws) or copy_of_target.
The term keeps the base's weight 1; the final term is unchanged.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from jax_local.ema import EmaPair
from jax_local.plan import LossTerm, Plan
from jax_local.plugins import base_heads, schedules
from jax_local.plugins.copies import BlockSpec, apply_copy

VARIANTS = ("man", "manpp")
BIAS_FORMS = ("parallel_block", "param_offset")
COPY_INITS = ("independent", "copy_of_target")


class MomentumHead(nn.Module):
  """MAN branch on module i's output, then `inner` (the base head). See the module docstring.

  Params: lb (trainable copy), ema (frozen copy), s (manpp), offset (param_offset), inner.
  """
  block: BlockSpec
  inner: nn.Module
  variant: str = "man"
  bias_form: str = "parallel_block"
  copy_sources: tuple[tuple[str, str], ...] = ()

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    if self.bias_form == "param_offset":
      block = self.block.make()
      offset = self.param("offset", lambda rng: jax.tree.map(
          jnp.zeros_like, block.init(rng, h, train=True)["params"]))
      y = apply_copy(self, "ema", self.block, h, train, frozen=True, offset=offset)
    else:
      lb = apply_copy(self, "lb", self.block, h, train, frozen=False)
      ema = apply_copy(self, "ema", self.block, h, train, frozen=True)
      if self.variant == "manpp":
        s = self.param("s", nn.initializers.ones, ())
        y = s * lb + (2.0 - s) * ema
      else:
        y = lb + ema
    return self.inner(y, batch, train)


def apply_man(mc, plan: Plan, split, num_classes: int) -> Plan:
  """Replaces every local term m_i (i < L−1) by the MAN head of module i (config.method.man)."""
  man = mc.man
  for field, value, valid in (("man.variant", man.variant, VARIANTS),
                              ("man.bias_form", man.bias_form, BIAS_FORMS),
                              ("man.copy_init", man.copy_init, COPY_INITS)):
    if value not in valid:
      raise ValueError(f"method.{field}={value!r} is unknown; valid: {', '.join(valid)}")
  if man.variant == "manpp" and man.bias_form != "parallel_block":
    raise ValueError("method.man.variant='manpp' needs man.bias_form='parallel_block'")
  heads, terms, pairs = dict(plan.heads), [], []
  for term in plan.terms:
    i = term.last
    if term.head == "final" or i == plan.num_modules - 1:
      terms.append(term)
      continue
    nxt = plan.modules[i + 1][0]
    lam = schedules.module_lambdas(man.lambda_schedule, mc.infopro, plan, i, split.paper_k)
    copies = ("ema",) if man.bias_form == "param_offset" else ("lb", "ema")
    sources = tuple((c, nxt) for c in copies) if man.copy_init == "copy_of_target" else ()
    heads[term.head] = MomentumHead(BlockSpec.of(plan.backbone.module(nxt)),
                                    base_heads.tail(mc, num_classes, lam), man.variant,
                                    man.bias_form, sources)
    pairs.append(EmaPair(term.head, ("ema",), nxt, man.ema_decay))
    terms.append(LossTerm(term.name, i, i, term.head, term.weight))
  desc = (f"{plan.description} + {man.variant.upper()} (m={man.ema_decay}, "
          f"copy_init={man.copy_init})")
  return dataclasses.replace(plan, heads=heads, terms=tuple(terms), description=desc,
                             ema_pairs=plan.ema_pairs + tuple(pairs))
