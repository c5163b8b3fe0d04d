"""Data parallelism over a device mesh, on one host or many (docs/design.md §8; docs/jax_notes.md §5).

One mesh axis, `data`, over every device of every process. The global batch is sharded along
its first axis (`NamedSharding(mesh, P("data"))`: device d holds rows [d·B/D, (d+1)·B/D));
parameters, BatchNorm statistics and optimizer state are replicated (`P()`). Under `jit` XLA
inserts the gradient all-reduce itself, and BatchNorm statistics are those of the global batch;
`model.bn_stats="per_device"` makes them per device instead (ghost BN with one group per data
shard, `jax_local.models.layers.BatchNorm`).

  par = Parallel.from_config(config)          # mesh, shardings, layer policy
  state = par.init(init_fn, rng)               # built per process, copied to its devices
  step = par.train_step(step)                  # (state, global batch) -> (state, metrics)
  batch = par.global_batch(local_numpy_batch)  # this process's rows -> one global jax.Array

Each executor places its step itself (`engine.Executor.placed`): the fused step is one outer
`jit` with explicit in/out shardings and the state donated; the sequential executor's programs
are called on the committed global arrays, so XLA partitions every program from its inputs
(activations sharded along the batch, gradients and statistics replicated). The new state is
checked to come out replicated.

Compute dtype (`model.dtype`): "bfloat16" runs convolutions, matmuls and BN outputs in bf16 with
float32 parameters, optimizer state, BN statistics and losses (every loss casts its input to
float32, `jax_local.losses`). The policy is entered around each call of a step, init and eval.

`initialize_distributed` starts `jax.distributed` for multi-host runs (launch.py calls it before
any other JAX call).
"""
from __future__ import annotations

import dataclasses
import os
import socket
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from jax_local.engine import Executor, Placement, pipelined
from jax_local.models import layers

DATA_AXIS = "data"
DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}
BN_STATS = ("global", "per_device")
DISTRIBUTED = ("auto", "slurm", "explicit", "off")


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh ("data",) over `devices` (default: every device of every process).

  The axis is `Auto`: XLA's sharding propagation partitions every program from its input
  shardings (jax 0.10's default, `Explicit`, would make the model code spell out the sharding
  of every reshape)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


@dataclasses.dataclass(frozen=True)
class Parallel:
  """A mesh, its batch and replicated shardings, and the layer policy of a run."""
  mesh: jax.sharding.Mesh
  policy: layers.Policy

  @classmethod
  def from_config(cls, config, mesh=None) -> "Parallel":
    mesh = make_mesh() if mesh is None else mesh
    model = config.model
    shards = mesh.shape[DATA_AXIS]
    if config.get("executor") == "pipelined":  # a stage's `data` devices (docs/design.md §3.9)
      shards //= config.get("pipeline", {}).get("stages", pipelined.DEFAULTS["stages"])
    groups = shards if model.get("bn_stats", "global") == "per_device" else 1
    return cls(mesh, layers.Policy(DTYPES[model.get("dtype", "float32")], groups))

  @property
  def num_shards(self) -> int:
    return self.mesh.shape[DATA_AXIS]

  @property
  def batch_sharding(self) -> NamedSharding:
    return NamedSharding(self.mesh, P(DATA_AXIS))

  @property
  def replicated(self) -> NamedSharding:
    return NamedSharding(self.mesh, P())

  def replicate_tree(self, tree):
    """A pytree of `replicated` with the structure of `tree`."""
    return jax.tree.map(lambda _: self.replicated, tree)

  def with_policy(self, fn: Callable) -> Callable:
    """fn(*args) with the layer policy entered (so first-call tracing sees it)."""

    def call(*args, **kwargs):
      with layers.policy(self.policy):
        return fn(*args, **kwargs)

    return call

  # ---------------------------------------------------------------- state

  def abstract_state(self, init_fn: Callable, *args):
    """`jax.eval_shape(init_fn, *args)` with the replicated sharding on every leaf (a restore
    target: orbax reads each array straight into its sharding)."""
    with layers.policy(self.policy):
      shapes = jax.eval_shape(init_fn, *args)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=self.replicated),
                        shapes)

  def init(self, init_fn: Callable, *args):
    """init_fn(*args), then every leaf replicated on every device of the mesh.

    init_fn runs unjitted so that its own jitted programs are shared by equal blocks and heads
    (`train_state.init_state`); every process computes the same values from the same seed and
    copies them to its local devices (no transfer between hosts)."""
    with layers.policy(self.policy):
      state = init_fn(*args)
    return self.put_replicated(state)

  def put_replicated(self, tree):
    """Every leaf (the same value in every process) replicated on every device of the mesh;
    each process copies its own value to its local devices (no transfer between hosts)."""
    local = self.replicated.addressable_devices
    return jax.tree.map(
        lambda x: jax.make_array_from_single_device_arrays(
            x.shape, self.replicated, [jax.device_put(x, d) for d in local]), tree)

  def is_replicated(self, tree) -> bool:
    return all(getattr(x, "sharding", None) is not None and x.sharding.is_fully_replicated
               for x in jax.tree.leaves(tree))

  # ---------------------------------------------------------------- batches

  def global_batch(self, local_batch: dict) -> dict:
    """This process's rows of every leaf -> global arrays sharded along the first axis.

    Processes contribute contiguous row blocks in process order (the datasets' local slices);
    the local row count must divide over this process's devices.
    """
    def put(x):
      x = np.asarray(x)
      local = len(self.mesh.local_devices)
      if x.shape[0] % local:
        raise ValueError(f"a local batch of {x.shape[0]} rows does not split over this "
                         f"process's {local} devices")
      return jax.make_array_from_process_local_data(self.batch_sharding, x)

    return jax.tree.map(put, local_batch)

  def prefetch(self, batches, size: int = 2):
    """Global batches of `batches`, `size` of them in flight on the devices."""
    from jax_local.data.imagenet import device_prefetch
    return device_prefetch(batches, size, self.batch_sharding)

  # ---------------------------------------------------------------- steps

  def train_step(self, step: Executor) -> Callable:
    """(state, global batch) -> (state, metrics) for an executor's step, placed with the state
    replicated and the batch sharded (`Executor.placed`); on several CPU devices its programs
    run one at a time. A new state that came out with another sharding (it should not) is put
    back to replicated; `reshards()` counts those."""
    one_at_a_time = self.num_shards > 1 and self.mesh.devices.flat[0].platform == "cpu"
    run = step.placed(Placement(self.replicate_tree, self.batch_sharding, self.replicated,
                                one_at_a_time))

    def placed(state, batch):
      new_state, metrics = run(state, batch)
      if not self.is_replicated(new_state):  # not seen with jax 0.10 (tests/test_sharding.py)
        placed.reshards += 1
        new_state = jax.device_put(new_state, self.replicate_tree(new_state))
      return new_state, metrics

    placed.reshards = 0
    wrapped = self.with_policy(placed)
    wrapped.reshards = lambda: placed.reshards
    return wrapped

  def eval_step(self, fn: Callable) -> Callable:
    """fn(params, stats, batch) -> replicated sums, jitted with the batch sharded."""
    jitted = jax.jit(fn, in_shardings=(self.replicated, self.replicated, self.batch_sharding),
                     out_shardings=self.replicated)
    return self.with_policy(jitted)


# -------------------------------------------------------------------- multi-host start-up


def slurm_present() -> bool:
  """Inside a SLURM step with more than one task (what jax.distributed auto-detects)."""
  needed = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
            "SLURM_LOCALID")
  return all(v in os.environ for v in needed) and int(os.environ["SLURM_NTASKS"]) > 1


def transfer_socket_address(flag: str, environ=None, hostname: str | None = None) -> str:
  """--transfer_address -> "HOST:PORT". "HOST:PORT" as given; ":PORT" (the same flag for every
  task of a SLURM step): this host's name and PORT + the task's rank on its node
  (`SLURM_LOCALID`, 0 outside SLURM), so the tasks of one node take consecutive ports. ValueError
  naming the flag for anything else, port 0 included (jax's transfers hang with it,
  docs/jax_notes.md §12)."""
  environ = os.environ if environ is None else environ
  host, _, port = flag.rpartition(":")
  if not port.isdigit() or int(port) == 0 or ":" not in flag:
    raise ValueError(f"--transfer_address={flag!r}: give HOST:PORT (this process's address, "
                     "reachable from the others, and a free port other than 0) or :PORT (this "
                     "host's name, PORT + the SLURM task's rank on the node)")
  if host:
    return flag
  return f"{hostname or socket.gethostname()}:{int(port) + int(environ.get('SLURM_LOCALID', 0))}"


def initialize_distributed(mode: str = "auto", coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           local_device_ids: Any = None, transfer_address: str = "") -> bool:
  """Starts `jax.distributed` when the run spans several processes; returns whether it did.

  mode: "auto": explicit flags if coordinator_address is given, else SLURM if this is a
  multi-task SLURM step, else a single process; "slurm": SLURM's environment (an error outside
  one); "explicit": coordinator_address, num_processes and process_id are required; "off": a
  single process. transfer_address: where this process serves jax's transfers of arrays
  between processes (`jax_cross_host_transfer_socket_address`, `transfer_socket_address`),
  which the pipelined executor needs when its stages are in different processes
  (docs/design.md §3.9). Must run before any other JAX call.
  """
  if mode not in DISTRIBUTED:
    raise ValueError(f"--distributed={mode!r}; valid: {', '.join(DISTRIBUTED)}")
  if transfer_address:
    jax.config.update("jax_cross_host_transfer_socket_address",
                      transfer_socket_address(transfer_address))
  explicit = (coordinator_address, num_processes, process_id)
  if mode == "off":
    return False
  if mode == "explicit" or (mode == "auto" and coordinator_address):
    if any(v is None or v == "" for v in explicit):
      raise ValueError("explicit multi-host start needs --coordinator_address, --num_processes "
                       "and --process_id (the same address and count on every process)")
    if not 0 <= process_id < num_processes:
      raise ValueError(f"--process_id={process_id} not in [0, {num_processes})")
    jax.distributed.initialize(coordinator_address, num_processes, process_id,
                               local_device_ids=local_device_ids)
    return True
  if mode == "slurm" or (mode == "auto" and slurm_present()):
    if mode == "slurm" and not slurm_present():
      raise ValueError("--distributed=slurm but this is not a multi-task SLURM step (run under "
                       "srun with --ntasks > 1)")
    jax.distributed.initialize(coordinator_address or None, num_processes, process_id,
                               local_device_ids=local_device_ids,
                               cluster_detection_method="slurm")
    return True
  return False
