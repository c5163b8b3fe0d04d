"""Auxiliary heads for local learning (docs/methods.md §4, §5).

Every head is a flax.linen Module with `__call__(h, batch, train) -> (loss, metrics)`;
see `jax_local.heads.common` for the exact contract.
"""
from jax_local.heads.common import LogitsCE, ce_and_metrics
from jax_local.heads.dgl import DGLHead
from jax_local.heads.infopro import (AuxClassifier, ClassifierHead, Decoder, InfoProHead,
                                     conv_a_spec, infopro_lambdas)
from jax_local.heads.predsim import PredSimHead, avg_pool_include_pad, predsim_pool

__all__ = [
    "AuxClassifier", "ClassifierHead", "DGLHead", "Decoder", "InfoProHead", "LogitsCE",
    "PredSimHead", "avg_pool_include_pad", "ce_and_metrics", "conv_a_spec", "infopro_lambdas",
    "predsim_pool",
]
