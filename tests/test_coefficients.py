"""heads/coefficients.py: a head's loss coefficients factored out of its structure."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jax_local.heads import InfoProHead
from jax_local.heads.coefficients import bind, factor
from jax_local.plugins.pff import PatchHead, QuadrantDecoderHead, SumHead


def _batch(n=4, hw=8):
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  return {"image01": jax.random.uniform(k1, (n, hw, hw, 3)),
          "label": jnp.arange(n) % 3}


def test_factor_walks_nested_heads_and_keeps_zeros():
  head = SumHead((QuadrantDecoderHead(0.7), PatchHead(InfoProHead(0.0, 0.3, num_classes=3,
                                                                  loss_mode="cross_entropy"),
                                                      (2, 2), "unrolled")), ("dec", "cls"))
  structure, values = factor(head)
  assert values == (0.7, 0.3)
  assert structure.parts[0].lambda_rec == 1.0
  assert structure.parts[1].inner.lambda_rec == 0.0   # a zero removes the decoder: structure
  assert structure.parts[1].inner.lambda_cls == 1.0
  assert bind(structure, values) == head
  # two modules' heads differing only in coefficient values share one structure
  other = head.clone(parts=(QuadrantDecoderHead(0.2), head.parts[1]))
  assert factor(other)[0] == structure
  with pytest.raises(ValueError, match="coefficient values"):
    bind(structure, (1.0,))


def test_bound_traced_coefficients_give_the_original_loss():
  head = InfoProHead(0.4, 0.6, num_classes=3, loss_mode="cross_entropy")
  h, batch = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 16)), _batch()
  variables = head.init(jax.random.PRNGKey(2), h, batch, train=False)
  expected, metrics = head.apply(variables, h, batch, train=False)
  np.testing.assert_allclose(expected, 0.4 * metrics["bce"] + 0.6 * metrics["ce"], rtol=1e-6)
  structure, values = factor(head)
  traced = jax.jit(lambda c: bind(structure, c).apply(variables, h, batch, train=False)[0])
  np.testing.assert_allclose(traced(jnp.asarray(values)), expected, rtol=1e-6)
  np.testing.assert_allclose(traced(jnp.asarray((0.1, 0.9))),
                             0.1 * metrics["bce"] + 0.9 * metrics["ce"], rtol=1e-5)
