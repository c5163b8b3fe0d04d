"""Compile-time memory of a step run as a schedule of programs: the sequential executor's
(one device) and the pipelined executor's (one place per stage), docs/design.md §5.

Every program is compiled for abstract arguments (`ProgramCompiler`, nothing runs). While call
k of the schedule runs, the driver holds the values `Schedule.live_during()[k]`, each on one
place p (`value_place`); the call runs on place `call_place(c_k)`. With held_p(k) the bytes of
the arrays held on p while call k runs (an array reachable from several names counted once) and
x_k = output − alias + temp of call k's program (`compiled.memory_analysis()`),

    peak_p = max_k  held_p(k) + [call k runs on p] · x_k

A transfer (the pipelined executor's copy of a value onto another stage) has no program: x_k is
the bytes of the copy, made on the receiving stage.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Callable, Hashable

import jax
import numpy as np

from jax_local.engine import pipeline_schedule as psched
from jax_local.engine import programs
from jax_local.engine import schedule as sched

# what the report calls the values of a schedule, by the first part of their name (before the
# first "/", or a pipelined name's "@m" micro-batch and ">s" copy suffixes)
HELD = {"params": "state", "opt": "state", "stats": "state", "step": "state", "grad": "grads",
        "act": "acts", "z": "acts", "ct": "cotangents", "batch": "batch"}
HELD_ORDER = ("state", "grads", "acts", "cotangents", "other", "batch")


def kind(name: str) -> str:
  """The HELD kind of a value name ("other" for new statistics, losses, metrics)."""
  return HELD.get(re.split(r"[/@>]", name)[0], "other")


def tree_bytes(*trees) -> int:
  """Bytes of the distinct array leaves (counted once by identity) of `trees`."""
  seen = {}
  for leaf in jax.tree.leaves(trees):
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
      seen[id(leaf)] = math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
  return sum(seen.values())


class ProgramCompiler:
  """`call` for an executor's walk of its schedule (`SequentialStep.run`,
  `PipelinedStep.walk`): compiles each program for abstract arguments, no execution (identical
  programs, same function and argument shapes, once). `calls`: per call, (x_k = output − alias
  + temp, argument bytes, abstract outputs); a transfer: (bytes of the copy, the same, the
  copy)."""

  def __init__(self):
    self.cache, self.calls = {}, []

  def __call__(self, call, fn, *args):
    if isinstance(call.program, psched.TransferSpec):
      copy = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), args[0])
      self.calls.append((tree_bytes(copy), tree_bytes(copy), copy))
      return copy
    traced = fn.trace(*args)
    key = programs.program_key(fn, args)
    if key not in self.cache:
      m = traced.lower().compile().memory_analysis()
      self.cache[key] = (m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes,
                         m.argument_size_in_bytes)
    self.calls.append((*self.cache[key], traced.out_info))
    return traced.out_info


@dataclasses.dataclass
class Peak:
  """One place's peak over a step's calls: bytes = held + program."""
  bytes: int
  call: str                  # label of the call at the peak
  held: int                  # held_p(k) at that call
  kinds: dict[str, int]      # held_p(k) by HELD kind (an array of two kinds counted in both)
  program: int               # x_k if the call runs on the place, else 0
  state: int                 # the step's state inputs held on the place (parameters,
                             # optimizer state, statistics, step counter)


def peaks(schedule: sched.Schedule, env: dict, compiled: ProgramCompiler,
          value_place: Callable[[str], Hashable] = lambda name: 0,
          call_place: Callable[[sched.Call], Hashable] = lambda call: 0) -> dict[Hashable, Peak]:
  """peak_p for every place p (the module docstring). env: the step's inputs by name
  (`sequential.step_inputs`); the calls' abstract outputs (`compiled.calls`, in the order of
  `schedule.calls`) are bound into it as the walk goes. Defaults: one place, 0."""
  state: dict[Hashable, list] = {}
  for n in schedule.inputs:
    if kind(n) == "state":
      state.setdefault(value_place(n), []).append(env[n])
  best: dict[Hashable, Peak] = {}
  for c, names, (extra, _, outputs) in zip(schedule.calls, schedule.live_during(),
                                           compiled.calls):
    here = call_place(c)
    by_place: dict[Hashable, list[str]] = {here: []}
    for n in names:
      by_place.setdefault(value_place(n), []).append(n)
    for p, held_names in by_place.items():
      held = tree_bytes([env[n] for n in held_names])
      program = extra if p == here else 0
      if p not in best or held + program > best[p].bytes:
        kinds = {k: tree_bytes([env[n] for n in held_names if kind(n) == k]) for k in HELD_ORDER}
        best[p] = Peak(held + program, c.label, held, kinds, program,
                       tree_bytes(state.get(p, [])))
    sched.bind(c.outputs, outputs, env)
  return best
