"""Two JAX processes on localhost (jax.distributed, gloo CPU collectives), two devices each, train
the quickstart's greedy ResNet-8 on 64 Fashion-MNIST images for two steps through
`train.train_and_evaluate`, sharing one workdir as hosts of a cluster share a file system.

Checked: both processes end with bit-identical parameters, BN statistics and optimizer state;
the checkpoint written by both and restored by both (orbax, into replicated shardings) equals
the live state; evaluation counts every test example once; only process 0 writes the run's
files; and the result equals one process on 8 devices with the same global batch (rtol/atol
1e-5: the mesh differs, 4 vs 8 shards, so the all-reduces sum in another order).
"""
import json
import logging
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from jax_local import parallel
from jax_local.metric_names import TRAIN_LOSS
from tests import fault_helpers as fh
from tests.xla_flags import xla_flags

pytestmark = pytest.mark.multi_device   # the one-process reference runs on all 8 devices
STEPS = 2

DRIVER = r"""
import json, os, sys
import jax
import numpy as np
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_disable_most_optimizations", True)  # fast compiles
pid, port, workdir, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
from jax_local import parallel
assert parallel.initialize_distributed("explicit", f"127.0.0.1:{port}", 2, pid)
assert jax.process_count() == 2 and jax.device_count() == 4, jax.devices()
sys.path.insert(0, os.getcwd())
from tests.test_distributed import tiny_config, dump
from jax_local import checkpointing, experiment, train
from jax_local.data import input_pipeline
from jax_local.train_state import init_state
config = tiny_config()
summary, state = train.train_and_evaluate(config, workdir, return_state=True)
# restore what both processes just wrote, as a resumed run does
dataset = input_pipeline.build_dataset(config.data, config.seed, pid, 2)
exp = experiment.build(config, dataset)
plan, tx = exp.plan, exp.tx
par = parallel.Parallel.from_config(config)
ckpt = checkpointing.Checkpointer(os.path.join(workdir, "checkpoints"), 3)
restored = ckpt.restore(par.abstract_state(
    lambda rng: init_state(plan, tx, rng, dataset.image_shape), jax.random.PRNGKey(config.seed)))
ckpt.close()
assert par.is_replicated(restored)
dump(out, state, restored, summary)
print("done", pid)
"""


PIPELINED_DRIVER = r"""
import os, sys
import jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.config.update("jax_disable_most_optimizations", True)  # fast compiles
pid, port, transfer_port, workdir, out = (int(sys.argv[1]), sys.argv[2], int(sys.argv[3]),
                                          sys.argv[4], sys.argv[5])
from jax_local import config_validation, parallel
assert parallel.initialize_distributed("explicit", f"127.0.0.1:{port}", 2, pid,
                                       transfer_address=f"127.0.0.1:{transfer_port + pid}")
assert jax.process_count() == 2 and jax.device_count() == 2, jax.devices()
sys.path.insert(0, os.getcwd())
from tests.test_distributed import pipelined_config, dump
from jax_local import train
config = pipelined_config()
jax.config.update("jax_cross_host_transfer_socket_address", "")   # read at start-up only
try:
  config_validation.validate_config(config)
  raise SystemExit("no error without --transfer_address")
except config_validation.ConfigError as e:
  print("refused:", e)
jax.config.update("jax_cross_host_transfer_socket_address", f"127.0.0.1:{transfer_port + pid}")
summary, state = train.train_and_evaluate(config, workdir, return_state=True)
dump(out, state, state, summary)
print("done", pid)
"""


def pipelined_config():
  """tiny_config trained by the pipelined executor: 2 stages, 2 micro-batches, async; at a small
  learning rate, so that the four updates' gradients are taken near the initial parameters, where
  they are well conditioned (docs/design.md §3.7). The optimizer state compared holds the
  gradients' momentum traces, which the learning rate does not scale."""
  c = tiny_config()
  c.optim.lr = 1e-3
  c.executor = "pipelined"
  c.pipeline.stages, c.pipeline.microbatches, c.pipeline.mode = 2, 2, "async"
  return c


def tiny_config():
  from configs import fashion_mnist_quickstart
  c = fashion_mnist_quickstart.get_config("greedy")
  c.data.train_subset, c.data.batch_size = 64, 32
  c.data.test_subset, c.data.eval_batch_size = 200, 128  # 2 eval batches, the last padded
  c.num_epochs, c.log_every_steps = 1, 1
  c.optim.schedule = "constant"
  return c


def dump(path, state, restored, summary):
  """This process's copy of the replicated state (its first local device) and the summary."""
  local = lambda tree: [np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(tree)]
  np.savez(path, *local(state), *local(restored))
  with open(path + ".json", "w") as f:
    json.dump(summary, f)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run_two(driver, devices_each, root, *args):
  """The driver in two processes (argv: process id, a coordinator port, args...,  the run's
  workdir, its dump path) -> (dumped arrays, summaries, outputs) per process."""
  port = _free_port()
  env = {**os.environ, "XLA_FLAGS": xla_flags(devices_each),
         "PYTHONPATH": os.pathsep.join([fh.ROOT, os.environ.get("PYTHONPATH", "")])}
  procs = [subprocess.Popen([sys.executable, "-c", driver, str(i), str(port), *map(str, args),
                             str(root / "run"), str(root / f"p{i}.npz")], cwd=fh.ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  try:
    outs = [p.communicate(timeout=600)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for i, (p, out) in enumerate(zip(procs, outs)):
    assert p.returncode == 0 and f"done {i}" in out, out[-4000:]
  arrays = [list(np.load(root / f"p{i}.npz").values()) for i in range(2)]
  summaries = [json.load(open(root / f"p{i}.npz.json")) for i in range(2)]
  return arrays, summaries, outs


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory, fashion_mnist):
  root = tmp_path_factory.mktemp("distributed")
  arrays, summaries, _ = _run_two(DRIVER, 2, root)
  return root, arrays, summaries


def test_two_processes_end_identical_and_restore_what_they_saved(two_processes):
  root, (a0, a1), (s0, s1) = two_processes
  assert len(a0) == len(a1) and len(a0) % 2 == 0
  for x, y in zip(a0, a1):  # live and restored state, process 0 == process 1, bit for bit
    np.testing.assert_array_equal(x, y)
  half = len(a0) // 2
  for live, restored in zip(a0[:half], a0[half:]):
    np.testing.assert_array_equal(live, restored)
  assert a0[0].shape == () and int(a0[0]) == STEPS  # TrainState.step
  own_clock = {"wall_time_s"}  # each process times its own run
  assert {k: v for k, v in s0.items() if k not in own_clock} == \
      {k: v for k, v in s1.items() if k not in own_clock}
  assert set(s0) == set(s1)
  history = json.load(open(root / "run" / "history.json"))
  assert history[-1]["step"] == STEPS and history[-1]["test_examples"] == 200
  checkpoints = fh.complete_checkpoints(root / "run")
  assert checkpoints == [STEPS]
  rows = [json.loads(l) for l in open(root / "run" / "metrics.jsonl")]
  assert [r["step"] for r in rows if TRAIN_LOSS in r] == list(range(1, STEPS + 1))  # one writer


def test_two_processes_equal_one_process_on_the_same_global_batch(two_processes, fashion_mnist,
                                                                  tmp_path):
  from jax_local import train
  root, (a0, _), (s0, _) = two_processes
  # compiled as the two processes compile (tests/conftest.py: most optimisations off)
  summary, state = train.train_and_evaluate(tiny_config(), str(tmp_path / "one"),
                                            return_state=True)
  assert jax.process_count() == 1 and jax.device_count() == 8
  _assert_close(state, summary, a0, s0, 1e-5)


def _assert_close(state, summary, dumped, dumped_summary, tol):
  """One process's final state and test error against process 0's dump (live state first)."""
  one = [np.asarray(x) for x in jax.tree.leaves(state)]
  assert len(one) == len(dumped) // 2
  print("max |1 process - 2 processes|:",
        max(float(np.max(np.abs(x.astype(np.float64) - y))) for x, y in zip(one, dumped)))
  for x, y in zip(one, dumped):
    np.testing.assert_allclose(x, y, rtol=tol, atol=tol)
  assert summary["final_test_error"] == pytest.approx(dumped_summary["final_test_error"],
                                                      abs=0.02)


def test_pipelined_stages_in_two_processes_equal_one_process(tmp_path, fashion_mnist, caplog):
  """Stage 0 in process 0, stage 1 in process 1 (one device each, values between them by jax's
  cross-host transfers) train as one process with both stages on two emulated devices (rtol/atol
  1e-6: the processes and the one-process run emulate different numbers of devices, so XLA may
  sum the stages' reductions in another order)."""
  from jax_local import train
  (a0, a1), (s0, s1), outs = _run_two(PIPELINED_DRIVER, 1, tmp_path, _free_port())
  assert all("refused: config.executor='pipelined' in 2 processes" in o for o in outs)
  for x, y in zip(a0, a1):
    np.testing.assert_array_equal(x, y)
  assert int(a0[0]) == STEPS
  caplog.set_level(logging.INFO, logger="jax_local")
  summary, state = train.train_and_evaluate(pipelined_config(), str(tmp_path / "one"),
                                            return_state=True, devices=jax.devices()[:2])
  # the trainer's log says where the stages run, once
  assert caplog.text.count("pipelined executor: stage 0: modules 0-") == 1
  assert "; stage 1: modules " in caplog.text
  _assert_close(state, summary, a0, s0, 1e-6)


def test_initialize_distributed_arguments():
  assert parallel.initialize_distributed("off") is False
  assert parallel.initialize_distributed("auto") is False  # no flags, no SLURM step here
  with pytest.raises(ValueError, match="--coordinator_address, --num_processes"):
    parallel.initialize_distributed("explicit", "127.0.0.1:1234", None, 0)
  with pytest.raises(ValueError, match="process_id=2 not in"):
    parallel.initialize_distributed("explicit", "127.0.0.1:1234", 2, 2)
  with pytest.raises(ValueError, match="not a multi-task SLURM step"):
    parallel.initialize_distributed("slurm")
  for bad in ("1234", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:http", ":0", ""):
    with pytest.raises(ValueError, match="--transfer_address=.*HOST:PORT"):
      parallel.transfer_socket_address(bad)
  with pytest.raises(ValueError, match="--transfer_address='1234'"):
    parallel.initialize_distributed("off", transfer_address="1234")
  assert parallel.transfer_socket_address("10.0.0.7:1240", {"SLURM_LOCALID": "3"}) == "10.0.0.7:1240"
  assert parallel.transfer_socket_address(":1240", {"SLURM_LOCALID": "3"}, "node17") == "node17:1243"
  assert parallel.transfer_socket_address(":1240", {}, "node17") == "node17:1240"
