"""The pipelined executor's cost model (benchmarks/pipeline_model.py) against hand computations
on made-up call costs: one sync step from idle = (M + S - 1)·T + U, the steady-state step time =
the slowest stage or link, a host-bound step = calls·h, and the best boundaries against brute
force. Plans only (a 4-module DGL ResNet-14), nothing compiled."""
import itertools
import random

import pytest

from benchmarks import pipeline_model as pm
from jax_local import experiment, splits
from jax_local.engine import schedule as sched
from jax_local.models import build_backbone
from tests import helpers

K = 4


@pytest.fixture(scope="module")
def plan():
  config = helpers.tiny_config("dgl", depth=14, preset="uniform_k4")
  backbone = build_backbone(config.model, config.data.num_classes)
  split = splits.get_split(config.split.preset, config.model.depth)
  out = experiment.build_plan(config.method, backbone, split, config.data.num_classes)
  assert out.num_modules == K
  return out


def _seconds(t, u):
  """Unit k costs t[k]; module k's head update costs u[k] (its other updates cost 0)."""
  heads = [f"m{k}" for k in range(K - 1)] + ["final"]
  return {**{f"unit {k}": t[k] for k in range(K)},
          **{f"update heads/{h}": u[k] for k, h in enumerate(heads)}}


def test_module_seconds(plan):
  t, u = [1.0, 2.0, 3.0, 4.0], [0.5, 0.25, 0.125, 1.0]
  assert pm.module_seconds(sched.build(plan), _seconds(t, u), K) == (t, u)


@pytest.mark.parametrize("bounds", [(), (2,), (1, 2, 3)])
@pytest.mark.parametrize("m", [1, 4, 8])
@pytest.mark.parametrize("u", [0.0, 0.3])
def test_one_sync_step_from_idle(plan, bounds, m, u):
  s = len(bounds) + 1
  per_stage = K // s   # equal stages: T = per_stage·t, U = per_stage·u
  t = 1.0
  p = pm.predict(plan, bounds, m, "sync", _seconds([t] * K, [u] * K), {}, float("inf"))
  big_t, big_u = per_stage * t, per_stage * u
  assert p.one_step == pytest.approx((m + s - 1) * big_t + big_u)
  assert p.bubble == pytest.approx(1 - (m * big_t + big_u) / ((m + s - 1) * big_t + big_u))
  slowest = m * big_t + big_u
  if p.one_step <= (pm.IN_FLIGHT + 1) * slowest:
    assert p.step == pytest.approx(slowest)   # steps overlap: no fill, no drain
  else:   # S = 4, M = 1: the host waits for step j-3 before step j, longer than 3 stage times
    assert p.step > slowest


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("bounds", [(1,), (3,), (1, 3), (1, 2, 3)])
def test_steady_step_is_the_slowest_stage_or_link(plan, mode, bounds):
  t, u, m = [3.0, 1.0, 2.0, 0.5], [0.4, 0.1, 0.2, 0.3], 4
  nbytes = {"act/1": 40.0, "act/2": 10.0, "act/3": 100.0, "batch": 0.0 if len(bounds) > 1 else 5.0}
  for bandwidth in (1e3, 10.0):   # links idle, then the bottleneck
    p = pm.predict(plan, bounds, m, mode, _seconds(t, u), nbytes, bandwidth)
    work = pm.module_work(t, u, m, mode)
    cuts = pm.cut_seconds(nbytes, K, m, bandwidth)
    assert p.step == pytest.approx(pm.bottleneck(work, cuts, bounds))


def test_host_bound(plan):
  p = pm.predict(plan, (2,), 4, "sync", _seconds([1e-3] * K, [0.0] * K), {}, float("inf"),
                 dispatch=1.0)
  assert p.step == pytest.approx(p.calls * 1.0)


def test_best_boundaries_against_brute_force():
  rng = random.Random(0)
  for _ in range(200):
    k = rng.randint(2, 7)
    work = [rng.uniform(0.1, 5.0) for _ in range(k)]
    cuts = tuple(sorted(rng.sample(range(1, k), rng.randint(1, k - 1))))
    cut_cost = {b: rng.uniform(0.0, 6.0) for b in range(1, k)}
    for stages in range(1, len(cuts) + 2):
      best = pm.best_boundaries(work, cut_cost, stages, cuts)
      brute = min(pm.bottleneck(work, cut_cost, c)
                  for c in itertools.combinations(cuts, stages - 1))
      assert set(best) <= set(cuts) and len(best) == stages - 1
      assert pm.bottleneck(work, cut_cost, best) == pytest.approx(brute)
