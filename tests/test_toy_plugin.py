"""A plug-in is one spec plus one registry line: a toy plug-in defined and registered here, and
nowhere else, gets its config section, its validation and its plan rewrite, and trains with
both executors (docs/design.md §2).

The toy plug-in scales the weight of every local term by `method.toy.scale` in (0, 1]. The
final term keeps weight 1, so the plan trains the same modules with other weights.
"""
import dataclasses

import jax
import ml_collections
import numpy as np
import pytest

from jax_local import config_validation, engine, plugins
from jax_local.config_errors import ConfigError
from jax_local.plan import FINAL_HEAD
from jax_local.registry import Plugin
from tests import helpers

MEAN, STD = (0.5, 0.4, 0.3), (0.25, 0.2, 0.3)


def _defaults():
  return {"toy": ml_collections.ConfigDict({"scale": 0.5})}


def _validate(mc, split, base):
  if not 0 < mc.toy.scale <= 1:
    raise ConfigError(f"config.method.toy.scale={mc.toy.scale!r} must be in (0, 1]")


def _rewrite(mc, plan, split, num_classes, base):
  terms = tuple(t if t.head == FINAL_HEAD else dataclasses.replace(t, weight=t.weight * mc.toy.scale)
                for t in plan.terms)
  return dataclasses.replace(plan, terms=terms, description=f"{plan.description} + toy")


TOY = Plugin("toy", _rewrite, _defaults, _validate)


@pytest.fixture()
def toy():
  with plugins.REGISTRY.registered(TOY):
    yield


def test_toy_plugin_config_and_validation(toy):
  config = helpers.tiny_config("dgl", plugin="toy")
  assert config.method.toy.scale == 0.5 and "hilo" not in config.method
  config_validation.validate_config(config)
  config.method.toy.scale = 2.0
  with pytest.raises(ConfigError, match=r"toy.scale=2.0 must be in \(0, 1\]"):
    config_validation.validate_config(config)
  with pytest.raises(ConfigError, match="does not compose with config.method.name='bp'"):
    config_validation.validate_config(helpers.tiny_config("bp", plugin="toy"))


def test_unselected_option_names_the_active_method(toy):
  config = helpers.tiny_config("dgl")
  config.method.toy = ml_collections.ConfigDict({"scale": 0.9})
  with pytest.raises(ConfigError, match=r"config.method.toy is an option of plug-in 'toy', but "
                                        r"this config runs method.name='dgl' with "
                                        r"method.plugin='none'"):
    config_validation.validate_config(config)


def test_toy_plugin_trains_with_both_executors(toy):
  config = helpers.tiny_config("dgl", plugin="toy")
  plan, tx, state = helpers.tiny_plan_and_state(config, normalisation=(MEAN, STD))
  assert [t.weight for t in plan.terms] == [0.5] * (plan.num_modules - 1) + [1.0]
  batch = helpers.random_batch()
  states = {}
  for executor in ("fused", "sequential"):
    step = engine.make_train_step(executor, plan, tx)
    current = jax.tree.map(np.array, state)
    for _ in range(2):
      current, metrics = step(current, batch)
      assert np.isfinite(float(metrics["loss"]))
    assert int(current.step) == 2
    states[executor] = current
  for a, b in zip(jax.tree.leaves(states["fused"].params),
                  jax.tree.leaves(states["sequential"].params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
