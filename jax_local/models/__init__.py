"""Backbones as ordered block lists."""
from jax_local.models.backbone import Backbone, apply_block
from jax_local.models.cifar_resnet import cifar_resnet

ARCHS = ("cifar_resnet",)


def build_backbone(model_config, num_classes: int) -> Backbone:
  if model_config.arch == "cifar_resnet":
    return cifar_resnet(model_config.depth, num_classes, model_config.shortcut)
  raise ValueError(f"config.model.arch={model_config.arch!r} is unknown; valid: {', '.join(ARCHS)}")
