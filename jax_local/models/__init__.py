"""Backbones as ordered block lists."""
from jax_local.models.backbone import Backbone, apply_block
from jax_local.models.cifar_resnet import cifar_resnet
from jax_local.models.imagenet_resnet import imagenet_resnet
from jax_local.models.vgg import vgg

ARCHS = ("cifar_resnet", "imagenet_resnet", "imagenet_resnext", "vgg")
IMAGENET_ARCHS = ARCHS[1:]


def build_backbone(model_config, num_classes: int) -> Backbone:
  """config.model -> Backbone. arch: cifar_resnet (depth 6n+2, §2.1); imagenet_resnet (depth 18, 34,
  50, 101, 152, §2.2); imagenet_resnext (depth 50/101, `model.groups` 32, `model.width_per_group`
  8: ResNeXt-101 32x8d); vgg (depth 11/13/16/19 with BN, §2.3). ImageNet ResNets read
  `model.zero_init_residual` (default False, §1.3)."""
  arch, depth = model_config.arch, model_config.depth
  zero = bool(getattr(model_config, "zero_init_residual", False))
  if arch == "cifar_resnet":
    return cifar_resnet(depth, num_classes, model_config.shortcut)
  if arch == "imagenet_resnet":
    return imagenet_resnet(depth, num_classes, zero_init_residual=zero)
  if arch == "imagenet_resnext":
    if depth not in (50, 101):
      raise ValueError(f"config.model.depth={depth!r}: ResNeXt depths are 50 and 101")
    return imagenet_resnet(depth, num_classes, int(getattr(model_config, "groups", 32)),
                           int(getattr(model_config, "width_per_group", 8)), zero)
  if arch == "vgg":
    return vgg(depth, num_classes)
  raise ValueError(f"config.model.arch={arch!r} is unknown; valid: {', '.join(ARCHS)}")
