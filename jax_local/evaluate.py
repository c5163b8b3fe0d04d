"""Evaluate a saved checkpoint of a run on its test split, without training.

  python -m jax_local.evaluate --workdir=DIR [--step=N | --best] [--data_dir=TFDS_DIR] [--json]

Rebuilds the run from its own config.json (`experiment.build`), restores the checkpoint of step N
(default: the newest readable one; `--best`: the best-validation checkpoint of a run with
`data.validation_size` > 0), opened read-only as the analysis tools do
(`analysis.run_loading.restore_state`), and evaluates it as training does
(`evaluation.evaluate_both`): the whole test split (and the validation split, if the run holds
one) with the running BatchNorm statistics and, when the run's `eval.bn_recompute_batches` > 0,
also with statistics re-estimated over the training batches of the checkpoint's epoch; besides
the network's error, the test accuracy of every local head that classifies (the layer-wise
curve). Prints the report (`--json`: the metrics as JSON); writes nothing, so it also reads a run
that is still training. Runs on one device.

Exit status: 0; 2 for a directory that is not a run, a missing step or an unknown flag (one line
on stderr).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from jax_local.analysis.run_records import RunError, method_label, read_config


def evaluate_checkpoint(workdir: str, step: int | None = None, data_dir: str | None = None,
                        best: bool = False) -> dict:
  """{"step", "epoch", metrics of `evaluation.evaluate_both`} of a run's checkpoint (`best`: of
  its best-validation checkpoint)."""
  import jax
  from jax_local import bn_reestimate, evaluation, experiment, parallel
  from jax_local.analysis import run_loading
  from jax_local.train_state import init_state
  workdir = os.path.abspath(workdir)
  config = read_config(workdir)
  folder = run_loading.BEST if best else "checkpoints"
  run_loading.checkpoint_dir(workdir, folder)  # fails before the data are loaded
  dataset = run_loading.load_dataset(config, data_dir)
  exp = experiment.build(config, dataset)
  plan, tx, steps_per_epoch = exp.plan, exp.tx, exp.steps_per_epoch
  template = jax.eval_shape(
      lambda: init_state(plan, tx, jax.random.PRNGKey(config.seed), dataset.image_shape))
  state, step = run_loading.restore_state(workdir, template, step, folder)
  par = parallel.Parallel.from_config(config, parallel.make_mesh(jax.devices()[:1]))
  state = par.put_replicated(state)
  epoch = max(step - 1, 0) // steps_per_epoch  # the epoch that the checkpoint's step ends or is in
  result = evaluation.evaluate_both(
      config, evaluation.make_eval_step(plan, par, config.eval.get("local_heads", True)),
      bn_reestimate.make_batch_statistics(plan, par), state, dataset, epoch, par)
  return {"step": step, "epoch": step / steps_per_epoch, **result}


def describe(workdir: str, config, result: dict) -> str:
  """The report: one line for the network, then one per local head (module order)."""
  line = (f"{method_label(config)} ({os.path.basename(os.path.abspath(workdir))}) step "
          f"{result['step']} (epoch {result['epoch']:g}): test error {result['test_error']:.2f}% "
          f"(loss {result['test_loss']:.4f}) on {result['test_examples']} examples")
  key = "test_error_bn_reestimated"
  if key in result:
    line += f"; with re-estimated BN statistics {result[key]:.2f}%"
  if "validation_error" in result:
    line += (f"; validation error {result['validation_error']:.2f}% on "
             f"{result['validation_examples']} examples")
  heads = result.get("local_test_accuracy", {})
  return "\n".join([line] + [f"  local head {term}: test accuracy {100 * acc:.2f}%"
                              for term, acc in heads.items()])


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m jax_local.evaluate", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True, help="the run's directory")
  which = ap.add_mutually_exclusive_group()
  which.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  which.add_argument("--best", action="store_true",
                     help="the best-validation checkpoint (runs with data.validation_size > 0)")
  ap.add_argument("--data_dir", default=None,
                  help="tfds data dir, if not the one in the run's config.json")
  ap.add_argument("--json", action="store_true", help="print the metrics as JSON")
  args = ap.parse_args(argv)
  try:
    config = read_config(os.path.abspath(args.workdir))
    result = evaluate_checkpoint(args.workdir, args.step, args.data_dir, args.best)
  except RunError as e:
    print(f"{ap.prog}: error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(result) if args.json else describe(args.workdir, config, result))
  return 0


if __name__ == "__main__":
  sys.exit(main())
