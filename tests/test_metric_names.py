"""Public metric names: the network's classifier under train/, local terms zero-padded under
local/, the weighted total named as such, evaluations under eval/."""
import types

from jax_local import metric_names
from jax_local.plan import FINAL_HEAD, LossTerm


def _plan(*terms, num_modules=12):
  return types.SimpleNamespace(terms=terms, num_modules=num_modules)


def test_bp_dgl_and_hilo_name_the_networks_classifier_alike():
  bp = _plan(LossTerm("bp", 0, 0, FINAL_HEAD, 1.0), num_modules=1)
  dgl = _plan(LossTerm("m3", 3, 3, "m3", 1.0), LossTerm("m10", 10, 10, "m10", 1.0),
              LossTerm("final", 11, 11, FINAL_HEAD, 1.0))
  hilo = _plan(LossTerm("cas7", 6, 7, "cas7", 0.999), LossTerm("final_x", 11, 11, FINAL_HEAD, 0.001),
               LossTerm("final_y", 10, 11, FINAL_HEAD, 0.999))
  raw = {"loss": 3.0, "lr": 0.1, "grad_norm": 2.0}
  assert metric_names.public(bp, {**raw, "bp/loss": 1.5, "bp/accuracy": 0.5}) == {
      "train/weighted_total_loss": 3.0, "lr": 0.1, "grad_norm": 2.0, "train/loss": 1.5,
      "train/accuracy": 0.5}
  named = metric_names.public(dgl, {**raw, "m3/loss": 1.0, "m10/loss": 2.0, "final/loss": 1.5})
  assert (named["local/m03/loss"], named["local/m10/loss"], named["train/loss"]) == (1.0, 2.0, 1.5)
  assert sorted(k for k in named if k.startswith("local/")) == ["local/m03/loss",
                                                                 "local/m10/loss"]
  named = metric_names.public(hilo, {**raw, "cas7/bce": 0.7, "final_x/loss": 1.5,
                                     "final_y/loss": 1.5})
  assert named["local/cas07/bce"] == 0.7 and named["train/loss"] == 1.5
  assert not any("final" in k for k in named)  # the duplicate term on the same logits is dropped


def test_padding_follows_the_largest_module_index():
  assert metric_names.padded_term("m3", 3) == "m03"
  assert metric_names.padded_term("m3", 120) == "m003"
  assert metric_names.padded_term("stem", 5) == "stem"


def test_evaluations_go_under_eval_with_the_local_heads():
  result = {"test_error": 12.5, "local_test_accuracy": {"m00": 0.5, "m01": 0.75},
            "local_test_accuracy_bn_reestimated": {"m00": 0.6}}
  assert metric_names.eval_scalars(result) == {
      "eval/test_error": 12.5, "eval/local/m00/test_accuracy": 0.5,
      "eval/local/m01/test_accuracy": 0.75,
      "eval/local/m00/test_accuracy_bn_reestimated": 0.6}
