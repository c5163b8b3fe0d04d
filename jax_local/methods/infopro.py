"""infopro: decoder + classifier on every local module, λ_rec·BCE(decoder) + λ_cls·L_cls
(docs/methods.md §4.1-§4.2, §4.6, §5.1).

Module j of L gets λ at r_j = j/(L−2) (`heads.infopro_lambdas`):
    λ_rec = ixx_1·(1−r) + ixx_2·r,   λ_cls = ixy_1·(1−r) + ixy_2·r
Under a plug-in, r comes from the plug-in's λ schedule (`plugins.schedules`, §5.2).
Section `method.infopro`: loss_mode (contrast = SupCon | cross_entropy), classifier (a
`heads.infopro.CLASSIFIER_CONFIGS` layout), feature_dim and temperature (SupCon), the λ row
(ixx_1, ixy_1, ixx_2, ixy_2), decoder_bce (`losses.DECODER_BCE`), head_family: the CIFAR heads
(`heads.infopro.InfoProHead`, §4.1-4.2) or the ImageNet ones (`heads.imagenet`, §4.6):
imagenet_infopro (InfoPro / MAN ImageNet) or imagenet_hpff (HPFF ImageNet: its decoders, BCE
summed over the image's quadrants). The ImageNet heads train with softmax CE only.
"""
from __future__ import annotations

import ml_collections

from jax_local import config_errors, losses
from jax_local.config_errors import ConfigError
from jax_local.heads import imagenet as imagenet_heads
from jax_local.heads.infopro import CLASSIFIER_CONFIGS, InfoProHead, infopro_lambdas
from jax_local.methods.local import local_plan
from jax_local.registry import Method

LOSS_MODES = ("contrast", "cross_entropy")
HEAD_FAMILIES = ("cifar", "imagenet_infopro", "imagenet_hpff")


def defaults():
  return {"infopro": ml_collections.ConfigDict({
      "loss_mode": "contrast", "classifier": "1c2f", "feature_dim": 128, "temperature": 0.07,
      "ixx_1": 5.0, "ixy_1": 0.5, "ixx_2": 0.0, "ixy_2": 0.0,
      "decoder_bce": "exact",      # exact | torch (the references' BCELoss(sigmoid))
      "head_family": "cifar",      # cifar | imagenet_infopro | imagenet_hpff
  })}


def head_family(ip) -> str:
  """`method.infopro.head_family` ("cifar" when absent); ConfigError if unknown, or if an
  ImageNet family is asked to train with SupCon."""
  family = getattr(ip, "head_family", "cifar") or "cifar"
  config_errors.choice("method.infopro.head_family", family, HEAD_FAMILIES)
  if family != "cifar" and ip.loss_mode != "cross_entropy":
    raise ConfigError(f"config.method.infopro.head_family={family!r} trains with softmax CE "
                      "only; set method.infopro.loss_mode='cross_entropy'")
  return family


def torch_bce(ip) -> bool:
  """Whether `method.infopro.decoder_bce` asks for PyTorch's BCE (`losses.bce_with_logits`)."""
  kind = getattr(ip, "decoder_bce", "exact") or "exact"
  config_errors.choice("method.infopro.decoder_bce", kind, losses.DECODER_BCE)
  return kind == "torch"


def validate(mc, split) -> None:
  del split
  ip = mc.infopro
  config_errors.choice("method.infopro.classifier", ip.classifier, CLASSIFIER_CONFIGS)
  config_errors.choice("method.infopro.loss_mode", ip.loss_mode, LOSS_MODES)
  torch_bce(ip)
  head_family(ip)


def infopro_head(ip, num_classes: int, lam_rec: float, lam_cls: float):
  """The InfoPro head at weights (λ_rec, λ_cls) of the family of section `ip`."""
  family = head_family(ip)
  if family == "cifar":
    return InfoProHead(lambda_rec=lam_rec, lambda_cls=lam_cls, classifier=ip.classifier,
                       loss_mode=ip.loss_mode, num_classes=num_classes,
                       feature_dim=ip.feature_dim, temperature=ip.temperature,
                       bce_torch_clamp=torch_bce(ip))
  hpff = family == "imagenet_hpff"
  return imagenet_heads.ImageNetInfoProHead(
      lambda_rec=lam_rec, lambda_cls=lam_cls, num_classes=num_classes,
      decoder_variant="hpff" if hpff else "infopro", quadrant_bce=hpff,
      bce_torch_clamp=torch_bce(ip))


def head(mc, num_classes: int, lam=(0.0, 1.0)):
  return infopro_head(mc.infopro, num_classes, *lam)


def lambdas(mc, r: float) -> tuple[float, float]:
  """(λ_rec, λ_cls) at ratio r of the λ row of `method.infopro`."""
  ip = mc.infopro
  return ip.ixx_1 * (1 - r) + ip.ixx_2 * r, ip.ixy_1 * (1 - r) + ip.ixy_2 * r


def has_decoder(mc) -> bool:
  """The CIFAR heads decode the image from the feature map, which HPFF can patch (§7.2)."""
  return head_family(mc.infopro) == "cifar"


def plan(mc, backbone, split, num_classes: int):
  ip = mc.infopro

  def head_of(i, num_modules):
    lam = infopro_lambdas(i, num_modules, ip.ixx_1, ip.ixy_1, ip.ixx_2, ip.ixy_2)
    return infopro_head(ip, num_classes, *lam)

  return local_plan("infopro", backbone, split, head_of)


SPEC = Method("infopro", plan, defaults, validate, head, lambdas, has_decoder)
