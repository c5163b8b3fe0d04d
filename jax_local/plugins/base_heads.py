"""The base method's heads as plugins use them (docs/methods.md §7.1, §7.4, §8.1, §9.1).

A plugin asks for three kinds of head on a base (greedy, dgl, infopro, predsim):
- `tail`: the base's own local loss at given InfoPro weights (λ_rec, λ_cls) — MAN and LAM put it
  after their block copies; MLAAN's IAN is this too (§8.1 InfoPro+MLAAN: decoder + classifier).
- `independent` (HPFF IAN, §7.1): for InfoPro the classifier alone with weight 1 ("classification
  only, no decoder"); for the other bases their head.
- `cascade` (HPFF CAN, §7.1-7.2, §7.4): the tail head with Patch Feature Fusion per `pff` config.
Greedy uses InfoPro's 0c1f classifier, DGL `method.dgl_head`, PredSim its sim+pred head; λ only
matters for InfoPro.
"""
from __future__ import annotations

import flax.linen as nn

from jax_local import heads as H
from jax_local.heads import imagenet as imagenet_heads
from jax_local.plugins import pff as pff_lib

BASES = ("greedy", "dgl", "infopro", "predsim")


def _infopro(mc, num_classes, lam_rec, lam_cls):
  """InfoPro head of the family `method.infopro.head_family` (CIFAR §4.1-4.2 or ImageNet §4.6)."""
  return imagenet_heads.infopro_head(mc.infopro, num_classes, lam_rec, lam_cls)


def tail(mc, num_classes: int, lam=(0.0, 1.0)) -> nn.Module:
  """The base's local head; for InfoPro with (λ_rec, λ_cls) = lam."""
  name = mc.name
  if name == "greedy":
    return H.ClassifierHead("0c1f", num_classes)
  if name == "dgl":
    return H.DGLHead(mc.dgl_head, num_classes)
  if name == "infopro":
    return _infopro(mc, num_classes, *lam)
  if name == "predsim":
    ps = mc.predsim
    return H.PredSimHead(num_classes=num_classes, beta=ps.beta, pool_target=ps.pool_target,
                         zero_init_pred=ps.zero_init_pred)
  raise ValueError(f"method.name={name!r} does not take plugins; bases: {', '.join(BASES)}")


def independent(mc, num_classes: int) -> nn.Module:
  """HPFF's IAN: InfoPro → its classifier alone, weight 1; other bases → their head."""
  if mc.name == "infopro":
    return _infopro(mc, num_classes, 0.0, 1.0)
  return tail(mc, num_classes)


def cascade(mc, num_classes: int, lam, pff) -> nn.Module:
  """HPFF's CAN: the tail head with PFF (`pff` = config.method.pff)."""
  grid, loop = tuple(pff.grid), pff.patch_loop
  patch = lambda inner: pff_lib.PatchHead(inner, grid, loop)
  if pff.mode == "off":
    return tail(mc, num_classes, lam)
  if mc.name != "infopro" or imagenet_heads.head_family(mc.infopro) != "cifar":
    # no (CIFAR) decoder: only the whole head can be patched (§7.4)
    if pff.mode != "paper_shared_avg" or pff.apply_to == "decoder":
      raise ValueError(f"method.pff.mode={pff.mode!r} / apply_to={pff.apply_to!r} needs a decoder; "
                       f"base {mc.name!r} has none: use mode 'paper_shared_avg' with apply_to "
                       "'classifier' (or 'both'), or 'off'")
    return patch(tail(mc, num_classes, lam))
  lam_rec, lam_cls = lam
  cls = _infopro(mc, num_classes, 0.0, lam_cls)
  if pff.mode == "code_quadrant_decoders":
    if lam_rec == 0:
      return cls
    decoders = pff_lib.QuadrantDecoderHead(lam_rec,
                                           bce_torch_clamp=imagenet_heads.torch_bce(mc.infopro))
    return pff_lib.SumHead((decoders, cls), ("dec", "cls"))
  if pff.mode != "paper_shared_avg":
    raise ValueError(f"method.pff.mode={pff.mode!r} is unknown; valid: {', '.join(pff_lib.MODES)}")
  dec = _infopro(mc, num_classes, lam_rec, 0.0)
  if pff.apply_to == "both":
    return patch(_infopro(mc, num_classes, lam_rec, lam_cls))
  if pff.apply_to == "decoder":
    return pff_lib.SumHead((patch(dec), cls), ("dec", "cls"))
  return pff_lib.SumHead((dec, patch(cls)), ("dec", "cls"))
