"""Evaluation counts the local heads' right answers on real rows only: a padded batch gives the
counts of its real rows evaluated alone."""
import jax.numpy as jnp
import numpy as np
import pytest

from jax_local import evaluation
from jax_local.data import fashion_mnist_idx
from jax_local.engine import forward
from jax_local.models.backbone import apply_with_stats
from tests.test_plugins_routing import build, plugin_config

MEAN, STD = (0.286,), (0.353,)


def test_padded_rows_count_for_no_head():
  c = plugin_config("dgl", "none", preset="blocks")
  c.data.num_classes = 10
  plan, _, state = build(c, image_shape=(28, 28, 1), normalisation=(MEAN, STD))
  images, labels = fashion_mnist_idx.read_split(fashion_mnist_idx.DEFAULT_MANUAL_DIR, "test")
  x = (images[:16].astype(np.float32) / 255.0 - MEAN[0]) / STD[0]
  real = 11
  padded = {"image": np.where(np.arange(16)[:, None, None, None] < real, x, 0.0),
            "label": np.where(np.arange(16) < real, labels[:16], 0).astype(np.int32),
            "mask": (np.arange(16) < real).astype(np.float32)}
  sums = evaluation.make_eval_step(plan)(state.params, state.batch_stats, padded)
  assert float(sums["count"]) == real and sorted(sums["local"]) == ["m00", "m01"]

  h, expected = jnp.asarray(x[:real]), {}
  alone = forward.with_image01({"image": h, "label": jnp.asarray(labels[:real])},
                               plan.normalisation)
  for i, term in enumerate(plan.terms[:-1]):  # the local terms, module order
    h, _ = forward.apply_module(plan, i, state.params, state.batch_stats, h, train=False)
    (_, metrics), _ = apply_with_stats(plan.heads[term.head], state.params["heads"][term.head],
                                       state.batch_stats["heads"].get(term.head, {}), h, alone,
                                       train=False)
    expected[f"m{i:02d}"] = float(metrics["accuracy"]) * real
  assert {k: float(v) for k, v in sums["local"].items()} == pytest.approx(expected, abs=1e-4)
  assert any(v > 0 for v in expected.values())  # some right answers, so padding could show
