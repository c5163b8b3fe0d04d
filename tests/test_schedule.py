"""The sequential executor's schedule (jax_local/engine/schedule.py) built from plans alone: its
calls, their order, arguments, placement, final flags and the liveness of the named values. No
state is built and nothing is traced or compiled."""
import dataclasses

import pytest

from jax_local import experiment, heads, splits
from jax_local.engine import schedule
from jax_local.models import build_backbone
from jax_local.plan import LossTerm
from tests import helpers
from tests import test_plugins_routing as plugin_routing


def _plan(config):
  backbone = build_backbone(config.model, config.data.num_classes)
  split = splits.get_split(config.split.preset, config.model.depth)
  return experiment.build_plan(config.method, backbone, split, config.data.num_classes)


def _labels(sched):
  return [c.label for c in sched.calls]


def _live(sched, label):
  return set(sched.live_during()[_labels(sched).index(label)])


UPDATES = ["update backbone/fc", "update backbone/s1b0", "update backbone/s2b0",
           "update backbone/s3b0", "update backbone/stem"]


def test_dgl_one_joint_unit_per_module_then_the_update():
  """ResNet-8 in 3 modules (stem+s1b0 | s2b0 | s3b0+fc), one DGL term per module."""
  plan = _plan(helpers.tiny_config("dgl"))
  s = schedule.build(plan)
  assert _labels(s) == (["unit 0", "unit 1", "unit 2"] + UPDATES
                        + ["update heads/final", "update heads/m0", "update heads/m1",
                           "statistics and metrics"])
  assert [c.module for c in s.calls[:3]] == [0, 1, 2]
  unit1 = s.calls[1]
  assert unit1.args[0] == ("params/backbone/s2b0",) and unit1.args[4] == "act/1"
  assert unit1.args[8:] == ((None,), (None,))   # no gradient buffer written before
  assert unit1.outputs[4] == "act/2"
  # every unit completes its module's and its head's gradient
  assert all(c.program.final_module and c.program.final_heads == (True,) for c in s.calls[:3])
  # a_1 is held from unit 0 (its writer) through unit 1 (its reader), then dropped
  assert "act/1" not in _live(s, "unit 0") and "act/1" in _live(s, "unit 1")
  assert "act/1" not in _live(s, "unit 2")
  assert s.dead_after()[1] == ("act/1",)
  # a gradient buffer lives from its writer to its part's update, which donates it
  assert "grad/backbone/s2b0" in _live(s, "update backbone/s2b0")
  assert "grad/backbone/s2b0" not in _live(s, "update backbone/s3b0")
  assert "grad/backbone/stem" in _live(s, "update backbone/s3b0")
  # the batch and the state are held throughout; the finish reads the step's statistics
  assert all({"batch", "step", "opt/backbone/stem"} <= set(n) for n in s.live_during())
  assert {"new_stats/backbone/stem", "loss/0", "sq/2"} <= _live(s, "statistics and metrics")


@pytest.mark.parametrize("split", ["never", "always"])
def test_cascade_windows_pull_cotangents_down_by_back_programs(split):
  """Windows {0,1}, {1,2} (HiLo-like) and {0,1,2} beside the three local terms."""
  plan = _plan(helpers.tiny_config("dgl"))
  plan = dataclasses.replace(
      plan, heads={**plan.heads, "c01": heads.DGLHead("cnn", 4)},
      terms=plan.terms + (LossTerm("c01", 0, 1, "c01", 0.5), LossTerm("c12", 1, 2, "final", 0.3),
                          LossTerm("c012", 0, 2, "final", 0.2)))
  s = schedule.build(plan, split)
  grads = [c for c in s.calls if c.label.startswith(("unit", "forward", "head", "back", "sum"))]
  if split == "never":
    assert [c.label for c in grads] == [
        "unit 0", "unit 1", "back 0 (unit 1)", "unit 2", "back 1 (unit 2)", "back 0 (unit 2)"]
    # unit 2 returns the cotangents at a_2 of the groups starting at 0 and 1; back 1 adds
    # them, pulls both back, and passes on the one of the group that goes on to module 0
    assert grads[3].outputs[-1] == ("ct/2/0/2", "ct/2/1/2")
    assert grads[4].args[3] == ("ct/2/0/2", "ct/2/1/2") and grads[4].outputs[1] == ("ct/2/0/1",)
    assert grads[4].program.last_stops and grads[4].program.num_in == 2
    assert grads[5].args[3] == ("ct/2/0/1",) and grads[5].outputs[1] == ()
  else:
    assert [c.label for c in grads] == [
        "forward 0", "head m0", "back 0 (unit 0)",
        "forward 1", "head m1", "head c01", "back 1 (unit 1)", "back 0 (unit 1)",
        "forward 2", "head final", "head c12", "head c012", "back 2 (unit 2)",
        "back 1 (unit 2)", "back 0 (unit 2)"]
    # "final" and "c12" / "c012" share the classifier head: its buffer is donated along
    heads_final = [c for c in grads if c.args[0] == "params/heads/final"]
    assert [c.args[-1] for c in heads_final] == [None, "grad/heads/final", "grad/heads/final"]
    assert [c.program.final for c in heads_final] == [False, False, True]
  # a back program runs where its module's blocks are; module 0's last writer completes it
  backs = [c for c in grads if isinstance(c.program, schedule.BackSpec)]
  assert all(c.label.startswith(f"back {c.module} ") for c in backs)
  finals = [c.program.final for c in backs if c.module == 0]
  assert finals == [False] * (len(finals) - 1) + [True] and len(finals) == 2 + (split == "always")
  # a_0 is held until the last back program through module 0; a_1 until the last through 1
  assert "act/0" in _live(s, "back 0 (unit 2)") and "act/1" not in _live(s, "back 0 (unit 2)")
  assert "act/1" in _live(s, "back 1 (unit 2)")
  assert not any(n.startswith(("act/", "ct/")) for n in _live(s, "update backbone/fc"))


def test_hpff_runs_modules_with_two_terms_in_split_mode():
  """HiLo k=2: at module i (1..3) its local term and the cascade from i-1 end, so module i
  runs as forward, one program per head, back programs through i and i-1."""
  plan = _plan(plugin_routing.plugin_config("dgl", "hpff"))
  s = schedule.build(plan)
  labels = _labels(s)
  assert labels[:6] == ["unit 0", "forward 1", "head ind1", "head cas1", "back 1 (unit 1)",
                        "back 0 (unit 1)"]
  # each head's cotangent is its group's (one term per group): no sum program
  assert s.calls[2].outputs[-1] == "ct/1/1/2" and s.calls[3].outputs[-1] == "ct/1/0/2"
  assert not any(l.startswith("sum") for l in labels)
  assert _live(s, "back 0 (unit 1)") >= {"act/0", "act/2", "ct/1/0/1"}


def test_man_heads_run_their_block_copies_as_trunk_stages():
  """MAN: module i's head holds copies of module i+1's first block (a trunk stage): stage
  forward, inner head, stage back; after the units the EMA copies move, then the updates read
  each head's gradient assembled from its pieces."""
  plan = _plan(plugin_routing.plugin_config("predsim", "man"))
  s = schedule.build(plan)
  labels = _labels(s)
  assert labels[:5] == ["forward 0", "trunk forward 0 m0", "head m0", "trunk back 0 m0",
                        "back 0 (unit 0)"]
  stage_fwd, inner, stage_back = s.calls[1:4]
  assert isinstance(stage_fwd.args[0], schedule.Keys) and stage_fwd.args[2] == "act/1"
  assert inner.args[0] == schedule.At("params/heads/m0", ("inner",))
  assert inner.args[2] == stage_fwd.outputs[0]          # the stage's output z_1
  assert stage_back.args[3] == inner.outputs[-1]        # the cotangent at z_1
  assert stage_back.outputs[1] == s.calls[4].args[3][0]  # ... pulled back to a_1
  emas = [c for c in s.calls if isinstance(c.program, schedule.EmaSpec)]
  assert [c.outputs for c in emas] == [schedule.At(f"params/heads/m{i}", ("ema",))
                                       for i in range(3)]
  # the copy of module i+1's block in head i reads that block's pre-step parameters
  assert [c.args[1] for c in emas] == ["params/backbone/s1b0", "params/backbone/s2b0",
                                       "params/backbone/s3b0"]
  assert labels.index("ema m2/ema") < labels.index("update backbone/s1b0")
  (update_m0,) = [c for c in s.calls if c.label == "update heads/m0"]
  assert update_m0.args[0] == schedule.Union(({"inner": "grad/heads/m0/inner"},
                                              "grad/heads/m0/stage0"))
  assert {"grad/heads/m0/inner", "grad/heads/m0/stage0"} <= _live(s, "update heads/m0")


def test_values_resolve_and_bind_by_name():
  env = {"a": {"inner": 1, "x": 2}, "g": {"x": 3}, "s": {}}
  assert schedule.resolve((schedule.At("a", ("inner",)), schedule.At("s", ("inner",)),
                           schedule.Keys("a", ("x", "y")), 0.5, None), env) == (1, {}, {"x": 2},
                                                                                0.5, None)
  assert schedule.resolve(schedule.Union(({"inner": "s"}, "g")), env) == {"x": 3}
  schedule.bind((schedule.At("a", ("x",)), None, {"k": "n"}), (7, 8, {"k": 9}), env)
  assert env["a"] == {"inner": 1, "x": 7} and env["n"] == 9


def test_unknown_split_mode_is_refused():
  with pytest.raises(ValueError, match="split='sometimes'; valid: auto, always, never"):
    schedule.build(_plan(helpers.tiny_config("dgl")), "sometimes")
