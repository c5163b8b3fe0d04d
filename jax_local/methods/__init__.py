"""The base methods, one registered spec per file, selected by `config.method.name`
(docs/methods.md §5-§6; the spec's shape: `jax_local.registry.Method`).

bp (§6.1), greedy and dgl (§4.3, §5.4), infopro (§4.1-§4.2, §5.1), predsim (§4.4), auglocal
(§6.3). A plug-in (`jax_local.plugins`) then rewrites the base's plan.
"""
from jax_local.methods import auglocal, bp, dgl, greedy, infopro, predsim
from jax_local.registry import Registry

REGISTRY = Registry("method.name", (bp.SPEC, greedy.SPEC, dgl.SPEC, infopro.SPEC, predsim.SPEC,
                                    auglocal.SPEC))
