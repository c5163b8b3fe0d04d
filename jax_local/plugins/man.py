"""man: MAN / MAN++, the momentum auxiliary network (docs/methods.md §9.1, §9.3; quirks Q6, Q14, Q18).

For every module i < L−1, with B the first block of module i+1 (the "next block"):
  man:   y = LB_i(h) + EMA_i(h)                    (bias_form "parallel_block", the code)
  manpp: y = s_i·LB_i(h) + (2 − s_i)·EMA_i(h)       (learnable scalar s_i, initialised to 1)
  param_offset: y = B(sg(θ_EMA) + b_i)(h)           ([decision] docs/methods.md §9.1, b_i init 0)
then the base's head at B's output width; h = E_i(sg a_i) [N,H,W,C]. LB_i is a trainable copy of
B; EMA_i is frozen and updated after each step as EMA_i ← m·EMA_i + (1−m)·θ_B (pre-step), m = 0.995.
The real B gets nothing from this term; the gradient flows through both branches into E_i.
`man.copy_init`: independent (the code, Q14: LB and EMA are fresh draws) or copy_of_target.
The term keeps the base's weight 1; the final term is unchanged.

`man.stem_module` (MAN++ only, §9.3): the stem, otherwise trained inside module 0, becomes its
own gradient-isolated module 0 with a MAN++ head on copies of block 1.0 (its own s), at the
InfoPro λ of ratio 0 and, for InfoPro, the code's stem classifier (1c2f, SupCon). Every other
module keeps its blocks, head and λ; the plan then has one module more than the split.
Section `method.man`: variant, ema_decay (m), copy_init, bias_form, lambda_schedule
(`plugins.schedules`, quirk Q6), stem_module. Composes with every base that has a local head.
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jax_local import config_errors
from jax_local.config_errors import ConfigError
from jax_local.ema import EmaPair
from jax_local.heads.infopro import InfoProHead
from jax_local.methods import infopro
from jax_local.plan import LossTerm, Plan
from jax_local.plugins import schedules
from jax_local.plugins.copies import BlockSpec, apply_copy
from jax_local.registry import Plugin

VARIANTS = ("man", "manpp")
BIAS_FORMS = ("parallel_block", "param_offset")
COPY_INITS = ("independent", "copy_of_target")
STEM_HEAD = "stem"


def defaults():
  return {"man": ml_collections.ConfigDict({
      "variant": "man",                 # man | manpp
      "ema_decay": 0.995,               # quirk Q18: the README value
      "copy_init": "independent",       # quirk Q14 (MAN code) | copy_of_target
      "bias_form": "parallel_block",    # | param_offset
      "lambda_schedule": "man_stage",   # quirk Q6
      "stem_module": False,             # MAN++ only: the stem as its own module
  })}


def validate(mc, split, base) -> None:
  del split, base
  man = mc.man
  config_errors.choice("method.man.variant", man.variant, VARIANTS)
  config_errors.choice("method.man.bias_form", man.bias_form, BIAS_FORMS)
  config_errors.choice("method.man.copy_init", man.copy_init, COPY_INITS)
  config_errors.choice("method.man.lambda_schedule", man.lambda_schedule, schedules.KINDS)
  config_errors.unit("method.man.ema_decay", man.ema_decay)
  if man.variant == "manpp" and man.bias_form != "parallel_block":
    raise ConfigError("config.method.man.variant='manpp' needs man.bias_form='parallel_block' "
                      "(s scales the LB block against the EMA block)")
  if man.get("stem_module", False) and man.variant != "manpp":
    raise ConfigError("config.method.man.stem_module=True is MAN++'s extra stem module: it needs "
                      "man.variant='manpp'")


def _momentum_branch(mdl: nn.Module, block: BlockSpec, variant: str, bias_form: str, h,
                     train: bool):
  """y from h [N,H,W,C] (module docstring), parameters owned by `mdl`: lb, ema, s, offset."""
  if bias_form == "param_offset":
    offset = mdl.param("offset", lambda rng: jax.tree.map(
        jnp.zeros_like, block.make().init(rng, h, train=True)["params"]))
    return apply_copy(mdl, "ema", block, h, train, frozen=True, offset=offset)
  lb = apply_copy(mdl, "lb", block, h, train, frozen=False)
  ema = apply_copy(mdl, "ema", block, h, train, frozen=True)
  if variant == "manpp":
    s = mdl.param("s", nn.initializers.ones, ())
    return s * lb + (2.0 - s) * ema
  return lb + ema


class MomentumTrunk(nn.Module):
  """The MAN branch of a MomentumHead alone (same parameter names, without `inner`): h -> y."""
  block: BlockSpec
  variant: str = "man"
  bias_form: str = "parallel_block"

  @property
  def variable_names(self) -> tuple[str, ...]:
    return ("offset", "ema") if self.bias_form == "param_offset" else ("lb", "ema", "s")

  @nn.compact
  def __call__(self, h, train: bool = True):
    return _momentum_branch(self, self.block, self.variant, self.bias_form, h, train)


class MomentumHead(nn.Module):
  """MAN branch on module i's output, then `inner` (the base head). See the module docstring.

  Params: lb (trainable copy), ema (frozen copy), s (manpp), offset (param_offset), inner.
  `trunk()` is the branch alone, which the sequential executor runs as programs of their own.
  """
  block: BlockSpec
  inner: nn.Module
  variant: str = "man"
  bias_form: str = "parallel_block"
  copy_sources: tuple[tuple[str, str], ...] = ()

  def trunk(self) -> tuple[MomentumTrunk]:
    return (MomentumTrunk(self.block, self.variant, self.bias_form, parent=None),)

  @nn.compact
  def __call__(self, h, batch, train: bool = True):
    y = _momentum_branch(self, self.block, self.variant, self.bias_form, h, train)
    return self.inner(y, batch, train)


def rewrite(mc, plan: Plan, split, num_classes: int, base) -> Plan:
  """Replaces every local term m_i (i < L−1) by the MAN head of module i (config.method.man)."""
  man = mc.man
  stem_module = bool(man.get("stem_module", False))
  base_plan, shift = plan, int(stem_module)
  if stem_module:
    plan = _split_off_stem(plan)
  copies = ("ema",) if man.bias_form == "param_offset" else ("lb", "ema")

  def man_head(i, inner):
    nxt = plan.modules[i + 1][0]
    sources = tuple((c, nxt) for c in copies) if man.copy_init == "copy_of_target" else ()
    return (MomentumHead(BlockSpec.of(plan.backbone.module(nxt)), inner, man.variant,
                         man.bias_form, sources), nxt)

  heads, terms, pairs = dict(plan.heads), [], []
  if stem_module:
    heads[STEM_HEAD], nxt = man_head(0, _stem_tail(mc, num_classes, base))
    pairs.append(EmaPair(STEM_HEAD, ("ema",), nxt, man.ema_decay))
    terms.append(LossTerm(STEM_HEAD, 0, 0, STEM_HEAD, 1.0))
  for term in plan.terms:
    i = term.last
    if term.head == "final" or i == plan.num_modules - 1:
      terms.append(term)
      continue
    r = schedules.module_ratio(man.lambda_schedule, base_plan, i - shift, split.paper_k)
    heads[term.head], nxt = man_head(i, base.head(mc, num_classes, base.lambdas(mc, r)))
    pairs.append(EmaPair(term.head, ("ema",), nxt, man.ema_decay))
    terms.append(LossTerm(term.name, i, i, term.head, term.weight))
  desc = (f"{base_plan.description} + {man.variant.upper()} (m={man.ema_decay}, "
          f"copy_init={man.copy_init}{', stem module' if stem_module else ''})")
  return dataclasses.replace(plan, heads=heads, terms=tuple(terms), description=desc,
                             ema_pairs=plan.ema_pairs + tuple(pairs))


def _split_off_stem(plan: Plan) -> Plan:
  """The stem (first block of module 0) as its own module 0; modules and terms shift by one."""
  first, stem = plan.modules[0], plan.backbone.block_names[0]
  if len(first) < 2 or first[0] != stem:
    raise ValueError("method.man.stem_module=True needs a split whose first module holds the "
                     f"stem and at least one more block (convention B); module 0 is {first}")
  modules = ((stem,), first[1:]) + tuple(plan.modules[1:])
  terms = tuple(dataclasses.replace(t, first=t.first + 1, last=t.last + 1) for t in plan.terms)
  return dataclasses.replace(plan, modules=modules, terms=terms)


def _stem_tail(mc, num_classes: int, base) -> nn.Module:
  """The head after the stem's MAN++ branch: InfoPro's decoder + 1c2f classifier with SupCon at
  ratio 0 (MAN++ CIFAR code), other bases their own head."""
  if base.name != "infopro":
    return base.head(mc, num_classes)
  if not base.has_decoder(mc):
    raise ValueError("method.man.stem_module=True exists for the CIFAR heads only "
                     "(MAN++ has no ImageNet code)")
  ip = mc.infopro
  lam_rec, lam_cls = base.lambdas(mc, 0.0)
  return InfoProHead(lam_rec, lam_cls, classifier="1c2f", loss_mode="contrast",
                     num_classes=num_classes, feature_dim=ip.feature_dim,
                     temperature=ip.temperature, bce_torch_clamp=infopro.torch_bce(ip))


SPEC = Plugin("man", rewrite, defaults, validate)
