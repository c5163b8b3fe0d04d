"""Train one config: python launch.py --config=configs/X.py --workdir=DIR [--config.field=value].
`python launch.py --list_configs` lists every published row (configs/published.py:<row>).

Multi-host (README "Running on clusters"): under a SLURM step with several tasks, jax.distributed
is started from SLURM's environment; elsewhere pass --coordinator_address=HOST:PORT
--num_processes=N --process_id=I to every process (--distributed=off forces a single process).
It is started before any other JAX call. The pipelined executor with its stages in different
processes also needs --transfer_address=HOST:PORT on every process (its own address and port).

Without the dataset: --mock_data=N trains on tfds.testing.mock_data, N random images per split of the
config's stock dataset (cifar10, svhn, stl10, imagenet2012), to check that a config builds, compiles,
trains, evaluates and checkpoints before the data are prepared. Its numbers mean nothing.

Exit status: 0 trained to the end; 75 stopped by SIGTERM/SIGINT after checkpointing (relaunch
the same command to resume; a second signal interrupts at once); 3 diverged (non-finite loss,
gradients or state; the newest checkpoint is the last good one); 4 on_nonfinite=skip skipped
more than max_skipped_fraction of the steps; 5 another live run holds the workdir (its lock,
README "What a workdir holds"); 2 a user error (unknown or misplaced config field, invalid
config, unwritable workdir, bad flag), reported in one line before anything is written; 1 any
other error.
"""
import contextlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # before TensorFlow is imported by tfds/clu

from absl import app, flags, logging
import jax
from ml_collections import config_flags

from jax_local import usage_errors  # run_log (which imports TensorFlow) once the flags are valid

flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and the summary.")
flags.DEFINE_enum("distributed", "auto", ["auto", "slurm", "explicit", "off"],
                  "Multi-host start-up: auto = the explicit flags below if given, else SLURM's "
                  "environment in a multi-task SLURM step, else one process; slurm / explicit "
                  "force one source; off = one process.")
flags.DEFINE_string("coordinator_address", None,
                    "HOST:PORT of process 0's coordinator, the same on every process.")
flags.DEFINE_integer("num_processes", None, "Number of processes (explicit start).")
flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")
flags.DEFINE_list("local_device_ids", None,
                  "Devices this process uses, e.g. 0,1,2,3 (default: JAX's: all local devices; "
                  "under SLURM on GPUs one per task, SLURM_LOCALID). With one process the mesh "
                  "spans these devices only.")
flags.DEFINE_string("transfer_address", "",
                    "HOST:PORT on which this process serves transfers of arrays to other "
                    "processes (a free port, reachable from them), or :PORT for this host's "
                    "name and PORT + SLURM_LOCALID (one flag for every SLURM task); needed by "
                    "executor=pipelined when its stages are in different processes.")
flags.DEFINE_integer("mock_data", 0,
                     "> 0: train on tfds.testing.mock_data, this many random examples per split "
                     "(stock tfds datasets only; a smoke test of the config, not a result).")
config_flags.DEFINE_config_file("config", None, "Experiment config file.", lock_config=True)
flags.DEFINE_bool("list_configs", False, "List every published row with the paper's numbers "
                  "(run it as --config=configs/published.py:<row>) and exit.")
for _name in ("config", "workdir"):  # required unless --list_configs
  flags.register_multi_flags_validator(
      [_name, "list_configs"], lambda f, n=_name: f["list_configs"] or f[n] is not None,
      message=f"flag --{_name} must have a value other than None")
FLAGS = flags.FLAGS


def mock_data(num_examples: int, dataset: str):
  """tfds.testing.mock_data with num_examples random examples per split of `dataset`, or no
  change if 0. Raises app.UsageError for a dataset that is not a stock tfds builder."""
  if num_examples <= 0:
    return contextlib.nullcontext()
  from jax_local.data import catalog
  if dataset not in (*catalog.TFDS_SPLITS, "imagenet2012"):
    raise app.UsageError(f"--mock_data mocks stock tfds datasets; config.data.name is "
                         f"{dataset!r}")
  import tensorflow_datasets as tfds
  from jax_local import run_log
  run_log.LOG.warning("--mock_data=%d: training on random data, not on %s", num_examples,
                      dataset)
  return tfds.testing.mock_data(num_examples=num_examples)


def local_devices(ids):
  """One process: the local devices of `ids` (jax device ids), or None for all; raises
  app.UsageError for an id this process does not have."""
  if ids is None:
    return None
  try:
    wanted = [int(i) for i in ids]
  except ValueError:
    raise app.UsageError(f"--local_device_ids={','.join(ids)}: give integers, e.g. 0,1")
  by_id = {d.id: d for d in jax.local_devices()}
  missing = [i for i in wanted if i not in by_id]
  if missing or not wanted or len(set(wanted)) != len(wanted):
    raise app.UsageError(
        f"--local_device_ids={','.join(ids)}: this process has devices "
        f"{', '.join(map(str, sorted(by_id)))} (each id at most once)")
  return [by_id[i] for i in wanted]


def final_line(summary: dict) -> str:
  """The line launch.py prints at the end of a run."""
  reestimated = summary.get("final_test_error_bn_reestimated")
  fmt = lambda v: "n/a" if v is None else f"{v:.2f}%"
  return (f"[{summary['method']}, {summary['executor']} executor] {summary['model']} on "
          f"{summary['dataset']}{' (MOCK DATA: numbers mean nothing)' if summary.get('mock') else ''}, "
          f"{summary['num_modules']} modules, {summary['epochs']} epochs: "
          f"final test error {fmt(summary['final_test_error'])}, "
          f"best {fmt(summary['best_test_error'])} (epoch {summary.get('best_epoch')})"
          + ("" if reestimated is None else
             f"; with re-estimated BN statistics {fmt(reestimated)}")
          + ("" if "test_error_at_best_validation" not in summary else
             f"; at the best validation error (epoch {summary['best_validation_epoch']}) "
             f"{fmt(summary['test_error_at_best_validation'])}")
          + (f"; {summary['skipped_steps']} steps skipped" if summary.get("skipped_steps") else ""))


def main(argv):
  if FLAGS.list_configs:
    from jax_local import published
    print(published.listing())
    return
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not FLAGS["verbosity"].present:  # orbax and tfds log every checkpoint write at INFO
    logging.set_verbosity(logging.WARNING)
  from jax_local import parallel  # imports nothing that calls JAX
  try:  # before any other JAX call
    parallel.initialize_distributed(
        FLAGS.distributed, FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id,
        None if FLAGS.local_device_ids is None else [int(i) for i in FLAGS.local_device_ids],
        FLAGS.transfer_address)
  except ValueError as e:
    raise app.UsageError(str(e))
  devices = None
  if jax.process_count() == 1 and FLAGS.local_device_ids is not None:
    devices = local_devices(FLAGS.local_device_ids)
    jax.config.update("jax_default_device", devices[0])
  from jax_local import config_validation, workdir_lock
  # user errors first, before anything is printed, imported or written
  config_validation.validate_config(FLAGS.config, None if devices is None else len(devices))
  workdir_lock.check_writable(FLAGS.workdir)
  from jax_local import run_log
  run_log.configure_console(verbose=jax.process_index() == 0)
  from jax_local.data import catalog
  if catalog.DATASETS[FLAGS.config.data.name].uses_tensorflow:
    try:
      import tensorflow as tf  # keep TensorFlow (tfds input pipelines) off the accelerators
      tf.config.experimental.set_visible_devices([], "GPU")
    except ImportError:
      pass
  from jax_local import checkpointing, divergence, preemption, train
  run_log.LOG.info("JAX process %d/%d, %d devices in all, local devices: %s", jax.process_index(),
                   jax.process_count(), jax.device_count(), jax.local_devices())
  try:
    with mock_data(FLAGS.mock_data, FLAGS.config.data.name):
      summary = train.train_and_evaluate(FLAGS.config, FLAGS.workdir,
                                         mock_examples=FLAGS.mock_data, devices=devices,
                                         validated=True)
  except workdir_lock.WorkdirLocked as e:
    print(f"launch.py: error: {e} (exit status {workdir_lock.EXIT_LOCKED})", file=sys.stderr,
          flush=True)
    sys.exit(workdir_lock.EXIT_LOCKED)
  except preemption.Preempted as e:
    run_log.LOG.warning("%s (exit status %d)", e, preemption.EXIT_PREEMPTED)
    sys.exit(preemption.EXIT_PREEMPTED)
  except divergence.Diverged as e:
    run_log.LOG.error("%s (exit status %d)", e, e.exit_status)
    sys.exit(e.exit_status)
  except (checkpointing.CheckpointMismatch, checkpointing.UnreadableCheckpoints) as e:
    run_log.LOG.error("%s", e)
    sys.exit(1)
  if jax.process_index() != 0:
    return
  print(final_line(summary), flush=True)


if __name__ == "__main__":
  usage_errors.run(main)
