"""A pipelined step's inputs onto its stages and its outputs back onto every device, when the
stages' devices may belong to several processes (hosts) (docs/design.md §3.9).

The trainer holds the state replicated on every device of its mesh and the global batch sharded
over them (`parallel.py`). The pipelined executor's mesh lays those devices, in the same order,
in S rows of D (`pipelined.make_mesh`): stage s holds its parts replicated over row s, stage 0
the batch sharded over row 0. In one process `jax.device_put` moves any array anywhere. Across
processes it moves an array only to as many devices in the same layout (jax's cross-host
transfer, enabled by `jax_cross_host_transfer_socket_address`: launch.py --transfer_address),
so each move below is built from such transfers or from no transfer at all:
- to a stage's row: every process already holds the replicated value on each of its devices;
  the row's array is assembled from those copies (`jax.make_array_from_single_device_arrays`);
- the batch to row 0: row r's devices hold the batch's rows [r·B/S, (r+1)·B/S) in row 0's
  layout; each such block moves to row 0 as one array, and row 0 concatenates the S blocks;
- to every device: an array replicated on row s is copied to every other row, and the array
  replicated on every device is assembled from the copies.
Every process makes the same calls in the same order (cross-host transfers pair by order).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def _one_process(x) -> bool:
  return not isinstance(x, jax.Array) or x.is_fully_addressable


def _assemble(like, sharding, arrays):
  """An array of `like`'s shape and dtype on `sharding` from this process's single-device
  arrays (one per addressable device of `sharding`; none in a process that holds none)."""
  return jax.make_array_from_single_device_arrays(like.shape, sharding, arrays, dtype=like.dtype)


def _local_shards(x, devices=None) -> list:
  """x's single-device arrays in this process (only those on `devices`, if given)."""
  return [s.data for s in x.addressable_shards if devices is None or s.device in devices]


def to_row(tree, sharding: NamedSharding):
  """Every leaf, replicated on `sharding`'s devices (a stage's row, `P()`). Leaves held in one
  process are copied by `jax.device_put`; a leaf replicated over several processes' devices (a
  superset of the row's) is assembled from its copies on the row, without a transfer."""
  devices = sharding.device_set
  return jax.tree.map(
      lambda x: jax.device_put(x, sharding) if _one_process(x)
      else _assemble(x, sharding, _local_shards(x, devices)), tree)


@functools.partial(jax.jit, static_argnums=0)
def _concatenate(sharding, *blocks):
  return jax.lax.with_sharding_constraint(jnp.concatenate(blocks), sharding)


def batch_to_first_row(batch, rows: list[Mesh], axis: str):
  """The global batch (every leaf sharded along its first axis over the devices of `rows` in
  their order, `parallel.Parallel.batch_sharding`) sharded over row 0 along `axis`."""
  first = NamedSharding(rows[0], P(axis))

  def move(x):
    if _one_process(x):
      return jax.device_put(x, first)
    block = jax.ShapeDtypeStruct((x.shape[0] // len(rows), *x.shape[1:]), x.dtype)
    blocks = [_assemble(block, NamedSharding(row, P(axis)), _local_shards(x, set(row.devices.flat)))
              for row in rows]
    return _concatenate(first, *jax.device_put(blocks, first))

  return jax.tree.map(move, batch)


def to_every_device(tree, rows: list[Mesh], shardings):
  """Every leaf (replicated on one of `rows`, or already on every device) on its sharding in
  `shardings` (a pytree of shardings replicated over the devices of every row). One transfer
  per row for all the leaves that row lacks."""
  leaves, treedef = jax.tree.flatten(tree)
  targets = treedef.flatten_up_to(shardings)
  if all(_one_process(x) for x in leaves):
    return jax.device_put(tree, shardings)
  row_of = {frozenset(row.devices.flat): r for r, row in enumerate(rows)}
  source = [row_of.get(frozenset(x.sharding.device_set)) for x in leaves]   # None: everywhere
  local = [_local_shards(x) for x in leaves]
  for r, row in enumerate(rows):
    missing = [i for i, s in enumerate(source) if s is not None and s != r]
    copies = jax.device_put([leaves[i] for i in missing], NamedSharding(row, P()))
    for i, copy in zip(missing, copies):
      local[i] += _local_shards(copy)
  return treedef.unflatten([jax.device_put(x, t) if s is None else _assemble(x, t, arrays)
                            for x, t, s, arrays in zip(leaves, targets, source, local)])
