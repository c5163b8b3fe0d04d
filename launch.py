"""Train one config: python launch.py --config=configs/X.py --workdir=DIR [--config.field=value].

Exit status: 0 trained to the end; 75 stopped by SIGTERM/SIGINT after checkpointing (relaunch
the same command to resume; a second signal interrupts at once); 3 diverged (non-finite loss,
gradients or state; the newest checkpoint is the last good one); 1 any other error.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported by tfds/clu

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from jax_local import run_log

flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and the summary.")
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:  # orbax and tfds log every checkpoint write at INFO
    logging.set_verbosity(logging.WARNING)
  run_log.configure_console(verbose=jax.process_index() == 0)
  try:
    import tensorflow as tf  # keep TensorFlow (input pipeline, summaries) off the accelerators
    tf.config.experimental.set_visible_devices([], "GPU")
  except ImportError:
    pass
  from jax_local import checkpointing, divergence, preemption, train
  run_log.LOG.info("JAX process %d/%d, local devices: %s", jax.process_index(), jax.process_count(),
               jax.local_devices())
  try:
    summary = train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except preemption.Preempted as e:
    run_log.LOG.warning("%s (exit status %d)", e, preemption.EXIT_PREEMPTED)
    sys.exit(preemption.EXIT_PREEMPTED)
  except divergence.Diverged as e:
    run_log.LOG.error("%s (exit status %d)", e, divergence.EXIT_DIVERGED)
    sys.exit(divergence.EXIT_DIVERGED)
  except (checkpointing.CheckpointMismatch, checkpointing.UnreadableCheckpoints) as e:
    run_log.LOG.error("%s", e)
    sys.exit(1)
  print(f"[{summary['method']}] {summary['model']} on {summary['dataset']}, "
        f"{summary['num_modules']} modules, {summary['epochs']} epochs: "
        f"final test error {summary['final_test_error']:.2f}%, "
        f"best {summary['best_test_error']:.2f}%", flush=True)


if __name__ == "__main__":
  app.run(main)
