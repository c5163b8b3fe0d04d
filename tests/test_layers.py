"""Layer helpers against numpy: adaptive average pooling (both code paths) and the init rules."""
import jax
import numpy as np
import pytest

from jax_local.models import layers


def _adaptive_pool_numpy(x, oh, ow):
  """PyTorch AdaptiveAvgPool2d rule, cell (i, j) averages rows floor(i*H/oh)..ceil((i+1)*H/oh)-1."""
  n, h, w, c = x.shape
  out = np.zeros((n, oh, ow, c))
  for i in range(oh):
    for j in range(ow):
      r0, r1 = (i * h) // oh, -(-((i + 1) * h) // oh)
      c0, c1 = (j * w) // ow, -(-((j + 1) * w) // ow)
      out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
  return out


@pytest.mark.parametrize("in_hw, out_hw", [((8, 8), (2, 2)), ((12, 6), (3, 2)),
                                           ((7, 7), (2, 2)), ((5, 9), (3, 4))])
def test_adaptive_avg_pool_matches_numpy(in_hw, out_hw):
  x = np.random.default_rng(0).normal(size=(2, *in_hw, 3)).astype(np.float32)
  got = layers.adaptive_avg_pool(x, out_hw)
  np.testing.assert_allclose(got, _adaptive_pool_numpy(x, *out_hw), rtol=1e-5, atol=1e-6)


def test_conv_init_is_he_fan_out_and_linear_is_torch_default():
  conv = layers.Conv(256, 3)
  kernel = conv.init(jax.random.PRNGKey(0), np.zeros((1, 8, 8, 64)))["params"]["Conv_0"]["kernel"]
  assert abs(float(kernel.std()) - np.sqrt(2.0 / (3 * 3 * 256))) < 0.02 * np.sqrt(2.0 / 2304)
  dense = layers.Dense(300).init(jax.random.PRNGKey(1), np.zeros((1, 400)))["params"]["Dense_0"]
  bound = 1 / np.sqrt(400)
  for name in ("kernel", "bias"):
    assert float(abs(dense[name]).max()) <= bound
    assert float(abs(dense[name]).max()) > 0.95 * bound


def test_vgg_layers_follow_the_compute_policy():
  """Under a bf16 policy VGG's convolutions and classifier matmuls take bf16 operands and the
  block output is bf16; parameters stay float32 and the result stays close to float32's."""
  import jax.numpy as jnp
  from jax_local.models.vgg import ConvBlock, VGGClassifier
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 4, 3))
  for module, heavy in ((ConvBlock(8), "conv_general_dilated"),
                        (VGGClassifier(5, hidden=16), "dot_general")):
    variables = module.init(jax.random.PRNGKey(1), x, train=True)
    assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype("float32")}
    run = lambda v: module.apply(v, x, train=True, mutable=["batch_stats"])[0]
    out32 = run(variables)
    with layers.policy(layers.Policy(jnp.bfloat16)):
      out16 = run(variables)
      eqns = jax.make_jaxpr(run)(variables).eqns
    ops = [e for e in eqns if e.primitive.name == heavy]
    assert ops and all(v.aval.dtype == jnp.bfloat16 for e in ops for v in e.invars)
    assert out32.dtype == jnp.float32 and out16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out16, np.float32), out32, rtol=0.05, atol=0.05)
