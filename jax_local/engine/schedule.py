"""The sequential executor's schedule: one training step as a flat list of program calls over
named values (docs/design.md §3.6). Plain data, built from a plan alone: nothing is traced.

A `Call` names its program (a spec below; calls with equal specs run one compiled program), its
arguments and its outputs. Arguments are a pytree whose leaves are value names (str), constants
(numbers: term weights, loss coefficients, EMA decays) and views (`At`, `Keys`, `Union`) of
named dict values; outputs are a pytree of names in the shape of the program's outputs. A name
written again (a gradient buffer, a part's parameters after its update) starts a new value.
The values of a step (N examples, module i with input a_i [N,H,W,C]):

  batch, step                 the batch {"image", "label"} and the step counter
  act/i                       a_i, the detached input of module i (act/0: the batch's image)
  params|opt|stats/T/P        parameters, optimizer state, BatchNorm statistics of part P
                              (T = backbone: a block; T = heads: a head)
  grad/T/P                    P's gradient buffer (a head with a trunk: grad/heads/P/inner and
                              grad/heads/P/stage<n>); new_stats/T/P: P's statistics of this step
  ct/i/f/m                    unit i's cotangent at a_m of its terms that start at module f
  ct/i/<term>[/z<n>]          a term's cotangent at a_{i+1} (at trunk stage n's input)
  z/<term>/<n>                input of stage n of a term's head trunk (z/<term>/0 = act/i+1)
  loss/k, sq/k                call k's Σ w·loss and squared norm of the gradients it completed
  metrics/<term>, metrics/step

`Schedule.live_during()[k]` is what the driver holds while call k runs (every value defined
before k and read by k or later, and the caller's batch); the driver frees a value after its
last read (`Schedule.dead_after`) and the memory report adds the bytes of the live values to
each program's own (docs/design.md §5).

Every call names the module whose stage runs it (`Call.module`: the module of its blocks, or of
the head's terms), so a placement of consecutive modules on devices places every call.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Hashable

import flax.linen as nn
import jax

from jax_local.heads import coefficients
from jax_local.plan import Plan

SPLIT = ("auto", "always", "never")


# ------------------------------------------------------------------------------ program specs


@dataclasses.dataclass(frozen=True)
class UnitSpec:
  """Joint program of module i: forward, every head, backward (`programs.unit`).

  heads: distinct heads of the terms ending at i; terms[k] = (group, head index), group 0 for a
  term starting at i, g >= 1 for the g-th cascade first (ascending); final_module / final_heads:
  whether this program completes the gradient of module i / of each head (it then adds their
  squared norm to its sq output).
  """
  blocks: tuple[nn.Module, ...]
  heads: tuple[nn.Module, ...]
  terms: tuple[tuple[int, int], ...]
  num_groups: int
  final_module: bool
  final_heads: tuple[bool, ...]


@dataclasses.dataclass(frozen=True)
class ForwardSpec:
  """Split mode: forward of module i only."""
  blocks: tuple[nn.Module, ...]


@dataclasses.dataclass(frozen=True)
class HeadSpec:
  """Split mode: one term's head (or the inner head of a head with a trunk) on its input."""
  head: nn.Module
  final: bool


@dataclasses.dataclass(frozen=True)
class TrunkForwardSpec:
  """One stage of a head's block copies (MAN, LAM: `head.trunk()`, the stages the head runs
  before its inner head; a stage names its variables in `variable_names`): z_{s+1} =
  sg(stage(z_s))."""
  stage: nn.Module


@dataclasses.dataclass(frozen=True)
class TrunkBackSpec:
  """Recomputes stage(z_s) and pulls the cotangent at z_{s+1} back to z_s; final: completes
  the stage's gradient."""
  stage: nn.Module
  final: bool


@dataclasses.dataclass(frozen=True)
class BackSpec:
  """Back program through module m: `num_in` incoming cotangents at its output, one per group
  of terms (ordered by first, ascending); the last group ends at m if `last_stops`."""
  blocks: tuple[nn.Module, ...]
  num_in: int
  last_stops: bool
  final: bool


@dataclasses.dataclass(frozen=True)
class SumSpec:
  """Sum of a group's term cotangents (split mode, several terms with one first)."""


@dataclasses.dataclass(frozen=True)
class EmaSpec:
  """One EMA copy moved toward its source's pre-step parameters (docs/design.md §4.3)."""


@dataclasses.dataclass(frozen=True)
class UpdateSpec:
  """The optimizer step of one part (T, P) (docs/design.md §4.2)."""
  part: tuple[str, str]


@dataclasses.dataclass(frozen=True)
class FinishSpec:
  """BatchNorm rule, step counter and the step's metrics (`engine/step_end.py`)."""


# ------------------------------------------------------------------------------ views


@dataclasses.dataclass(frozen=True)
class At:
  """The entry at `path` of the dict value `name` ({} where absent). As an output: the value
  `name` with that entry replaced (other entries shared)."""
  name: str
  path: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Keys:
  """{k: value[k]} for the `keys` present in the dict value `name` (a trunk stage's variables)."""
  name: str
  keys: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Union:
  """The union of the dicts `parts` (arguments), without entries that hold an empty dict (a
  part without BatchNorm statistics): a head with a trunk, assembled from its pieces."""
  parts: tuple[Any, ...]


VIEWS = (At, Keys, Union)


def _is_leaf(x) -> bool:
  return isinstance(x, (str, *VIEWS))


def names(tree) -> list[str]:
  """The value names an argument or output pytree reads or writes, in order."""
  out = []
  for leaf in jax.tree.leaves(tree, is_leaf=_is_leaf):
    if isinstance(leaf, str):
      out.append(leaf)
    elif isinstance(leaf, Union):
      out += names(leaf.parts)
    elif isinstance(leaf, (At, Keys)):
      out.append(leaf.name)
  return out


def resolve(tree, env: dict[str, Any]):
  """`tree` with every name and view replaced by its value in `env`."""
  def get(leaf):
    if isinstance(leaf, str):
      return env[leaf]
    if isinstance(leaf, At):
      value = env[leaf.name]
      for key in leaf.path:
        value = value.get(key, {})
      return value
    if isinstance(leaf, Keys):
      return {k: env[leaf.name][k] for k in leaf.keys if k in env[leaf.name]}
    if isinstance(leaf, Union):
      merged = {}
      for part in resolve(leaf.parts, env):
        merged.update({k: v for k, v in part.items() if not (isinstance(v, dict) and not v)})
      return merged
    return leaf
  return jax.tree.map(get, tree, is_leaf=_is_leaf)


def bind(outputs, values, env: dict[str, Any]) -> None:
  """Stores `values` (a program's outputs) under the names of `outputs` in `env`."""
  if outputs is None:
    return
  if isinstance(outputs, str):
    env[outputs] = values
  elif isinstance(outputs, At):
    env[outputs.name] = _set_path(env[outputs.name], outputs.path, values)
  elif isinstance(outputs, dict):
    for k, v in outputs.items():
      bind(v, values[k], env)
  else:
    if len(outputs) != len(values):
      raise ValueError(f"{len(values)} values for the outputs {outputs}")
    for o, v in zip(outputs, values):
      bind(o, v, env)


def _set_path(tree, path, value):
  if not path:
    return value
  return {**tree, path[0]: _set_path(tree[path[0]], path[1:], value)}


# ------------------------------------------------------------------------------ schedule


@dataclasses.dataclass(frozen=True)
class Call:
  """One program call: `outputs = program(*args)`, run on the stage of `module` (None: the
  step's end, which reads every part's statistics)."""
  label: str
  program: Hashable
  args: tuple[Any, ...]
  outputs: Any
  module: int | None


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The calls of one step; `inputs`: names bound from the state and batch before the first
  call; `results`: {"state": {field: names}, "metrics": {prefix: name}}, read after the last."""
  calls: tuple[Call, ...]
  inputs: tuple[str, ...]
  results: dict

  @property
  def lifetimes(self) -> list[tuple[str, int, int]]:
    """(name, defining call, last reading call) of every value; -1: a step input; len(calls):
    read after the last call (results, and the batch, which the caller holds)."""
    end = len(self.calls)
    current = {n: [n, -1, -1] for n in self.inputs}
    spans = []
    for k, c in enumerate(self.calls):
      for n in names(c.args) + [o.name for o in jax.tree.leaves(c.outputs, is_leaf=_is_leaf)
                                if isinstance(o, At)]:
        current[n][2] = k
      for n in names(c.outputs):
        if n in current:
          spans.append(tuple(current[n]))
        current[n] = [n, k, k]
    for n in names(self.results) + ["batch"]:
      current[n][2] = end
    return spans + [tuple(v) for v in current.values()]

  def live_during(self) -> list[tuple[str, ...]]:
    """Per call, the names whose values are held while it runs (its outputs not included)."""
    spans = self.lifetimes
    return [tuple(n for n, d, r in spans if d < k <= r) for k in range(len(self.calls))]

  def dead_after(self) -> list[tuple[str, ...]]:
    """Per call, the names whose values are read for the last time by it (or never read)."""
    spans = self.lifetimes
    out = []
    for k in range(len(self.calls)):
      kept = {n for n, d, r in spans if d == k and r > k}
      out.append(tuple(dict.fromkeys(n for n, d, r in spans if r == k and n not in kept)))
    return out


def build(plan: Plan, split: str = "auto") -> Schedule:
  """The schedule of one step of `plan`. split: "auto" runs a module in split mode (its heads
  then never share memory with each other or with the module) when two or more terms end there
  or a head ending there runs copies of backbone blocks (MAN, LAM), others jointly; "always" /
  "never" force one mode (a module without terms is always joint). docs/design.md §3.6."""
  if split not in SPLIT:
    raise ValueError(f"split={split!r}; valid: {', '.join(SPLIT)}")
  b = _Builder(plan)
  heavy = {p.head for p in plan.ema_pairs}   # heads holding block copies
  for i in range(plan.num_modules):
    terms = plan.terms_ending_at(i)
    light = len(terms) < 2 and not any(t.head in heavy for t in terms)
    if not terms or split == "never" or (split == "auto" and light):
      b.joint_unit(i)
    else:
      b.split_unit(i)
  b.update()
  calls = mark_final(b.calls)
  inputs = ("batch", "act/0", "step") + tuple(
      f"{kind}/{top}/{p}" for kind in ("params", "opt", "stats") for top, p in b.parts)
  state = {"step": "step",
           **{field: {top: {p: f"{kind}/{top}/{p}" for t, p in b.parts if t == top}
                      for top in ("backbone", "heads")}
              for field, kind in (("params", "params"), ("opt_state", "opt"),
                                  ("batch_stats", "stats"))}}
  metrics = {f"{t.name}/": f"metrics/{t.name}" for t in plan.terms}
  return Schedule(tuple(calls), inputs,
                  {"state": state, "metrics": {**metrics, "": "metrics/step"}})


class _Builder:
  """Appends the calls of each unit, then of the update, to `calls`."""

  def __init__(self, plan: Plan):
    self.plan, self.calls = plan, []
    self.parts = sorted([("backbone", n) for n in plan.backbone.block_names]
                        + [("heads", h) for h in plan.heads])
    self.factored = {h: coefficients.factor(head) for h, head in plan.heads.items()}
    self.written: set[str] = set()     # gradient buffers written so far
    self.new_stats: dict[str, Any] = {}  # part -> name (or Union) of its new statistics
    self.losses, self.sqs = [], []

  def blocks(self, m):
    return tuple(self.plan.backbone.module(n) for n in self.plan.modules[m])

  def acc(self, name):
    """A gradient buffer as an argument: its name, or None before its first write."""
    return name if name in self.written else None

  def add(self, label, program, args, outputs, module):
    self.written.update(n for n in names(outputs) if n.startswith("grad/"))
    self.calls.append(Call(label, program, args, outputs, module))

  def scalars(self, sq_only=False):
    """Names of the next call's Σ w·loss and squared norm outputs (recorded for the finish)."""
    k = len(self.calls)
    self.sqs.append(f"sq/{k}")
    if sq_only:
      return f"sq/{k}"
    self.losses.append(f"loss/{k}")
    return f"loss/{k}", f"sq/{k}"

  def term_ct(self, i, term, groups_terms):
    """Where a term's cotangent at a_{i+1} goes: its group's name if it is alone there."""
    group = groups_terms[term.first]
    return f"ct/{i}/{term.first}/{i + 1}" if len(group) == 1 else f"ct/{i}/{term.name}"

  def joint_unit(self, i):
    terms = self.plan.terms_ending_at(i)
    blocks, groups = self.plan.modules[i], sorted({t.first for t in terms})
    down = [f for f in groups if f < i]
    heads = tuple(dict.fromkeys(t.head for t in terms))
    spec = UnitSpec(self.blocks(i), tuple(self.factored[h][0] for h in heads),
                    tuple((0 if t.first == i else 1 + down.index(t.first), heads.index(t.head))
                          for t in terms), len(down), False, (False,) * len(heads))
    g_blocks = tuple(f"grad/backbone/{n}" for n in blocks)
    g_heads = tuple(f"grad/heads/{h}" for h in heads)
    args = (tuple(f"params/backbone/{n}" for n in blocks),
            tuple(f"stats/backbone/{n}" for n in blocks),
            tuple(f"params/heads/{h}" for h in heads), tuple(f"stats/heads/{h}" for h in heads),
            f"act/{i}", "batch", tuple(float(t.weight) for t in terms),
            tuple(self.factored[h][1] for h in heads), tuple(map(self.acc, g_blocks)),
            tuple(map(self.acc, g_heads)))
    outputs = (g_blocks, g_heads, tuple(f"new_stats/backbone/{n}" for n in blocks),
               tuple(f"new_stats/heads/{h}" for h in heads), f"act/{i + 1}", *self.scalars(),
               tuple(f"metrics/{t.name}" for t in terms), tuple(f"ct/{i}/{f}/{i}" for f in down))
    self.add(f"unit {i}", spec, args, outputs, i)
    self.new_stats.update({("heads", h): f"new_stats/heads/{h}" for h in heads})
    self.backs(i, range(i - 1, down[0] - 1, -1) if down else (), down)

  def split_unit(self, i):
    terms = self.plan.terms_ending_at(i)
    blocks, groups = self.plan.modules[i], sorted({t.first for t in terms})
    self.add(f"forward {i}", ForwardSpec(self.blocks(i)),
             (tuple(f"params/backbone/{n}" for n in blocks),
              tuple(f"stats/backbone/{n}" for n in blocks), f"act/{i}"),
             (f"act/{i + 1}", tuple(f"new_stats/backbone/{n}" for n in blocks)), i)
    by_group = {f: [t for t in terms if t.first == f] for f in groups}
    for t in terms:
      structure, coefs = self.factored[t.head]
      ct = self.term_ct(i, t, by_group)
      if callable(getattr(structure, "trunk", None)):
        self.trunked_head(i, t, structure, coefs, ct)
        continue
      self.add(f"head {t.name}", HeadSpec(structure, False),
               (f"params/heads/{t.head}", f"stats/heads/{t.head}", f"act/{i + 1}", "batch",
                float(t.weight), coefs, self.acc(f"grad/heads/{t.head}")),
               (f"grad/heads/{t.head}", f"new_stats/heads/{t.head}", *self.scalars(),
                f"metrics/{t.name}", ct), i)
      self.new_stats[("heads", t.head)] = f"new_stats/heads/{t.head}"
    for f, group in by_group.items():
      if len(group) > 1:
        self.add(f"sum group {f}", SumSpec(), tuple(f"ct/{i}/{t.name}" for t in group),
                 f"ct/{i}/{f}/{i + 1}", i)
    self.backs(i, range(i, groups[0] - 1, -1), groups)

  def trunked_head(self, i, term, structure, coefs, ct):
    """Stage forwards, the inner head, stage backs in reverse (recomputing each stage)."""
    h, stages = term.head, structure.trunk()
    if any(coefficients.factor(st)[1] for st in stages):
      raise ValueError(f"head {h}: a trunk must not hold loss coefficients")
    params, stats = f"params/heads/{h}", f"stats/heads/{h}"
    zs = [f"act/{i + 1}"] + [f"z/{term.name}/{n + 1}" for n in range(len(stages))]
    for n, st in enumerate(stages):
      v = tuple(st.variable_names)
      self.add(f"trunk forward {n} {term.name}", TrunkForwardSpec(st),
               (Keys(params, v), Keys(stats, v), zs[n]),
               (zs[n + 1], f"new_stats/heads/{h}/stage{n}"), i)
    cts = [ct] + [f"ct/{i}/{term.name}/z{n + 1}" for n in range(len(stages))]
    self.add(f"head {term.name}", HeadSpec(structure.inner, False),
             (At(params, ("inner",)), At(stats, ("inner",)), zs[-1], "batch",
              float(term.weight), coefs, self.acc(f"grad/heads/{h}/inner")),
             (f"grad/heads/{h}/inner", f"new_stats/heads/{h}/inner", *self.scalars(),
              f"metrics/{term.name}", cts[-1]), i)
    for n in reversed(range(len(stages))):
      v = tuple(stages[n].variable_names)
      self.add(f"trunk back {n} {term.name}", TrunkBackSpec(stages[n], False),
               (Keys(params, v), Keys(stats, v), zs[n], cts[n + 1],
                self.acc(f"grad/heads/{h}/stage{n}")),
               (f"grad/heads/{h}/stage{n}", cts[n], self.scalars(sq_only=True)), i)
    pieces = [f"new_stats/heads/{h}/stage{n}" for n in range(len(stages))]
    self.new_stats[("heads", h)] = Union((*pieces, {"inner": f"new_stats/heads/{h}/inner"}))

  def backs(self, i, modules, groups):
    """Back programs through `modules` (descending) of unit i's cascade groups `groups`."""
    for m in modules:
      active = [f for f in groups if f <= m]
      names_m = self.plan.modules[m]
      g = tuple(f"grad/backbone/{n}" for n in names_m)
      self.add(f"back {m} (unit {i})",
               BackSpec(self.blocks(m), len(active), active[-1] == m, False),
               (tuple(f"params/backbone/{n}" for n in names_m),
                tuple(f"stats/backbone/{n}" for n in names_m), f"act/{m}",
                tuple(f"ct/{i}/{f}/{m + 1}" for f in active), tuple(map(self.acc, g))),
               (g, tuple(f"ct/{i}/{f}/{m}" for f in active if f < m),
                self.scalars(sq_only=True)), m)

  def update(self):
    """EMA copies (toward their sources' pre-step parameters), the optimizer part by part, then
    the statistics and metrics."""
    module_of = {n: m for m, blocks in enumerate(self.plan.modules) for n in blocks}
    module_of.update({t.head: t.last for t in self.plan.terms})
    for pair in self.plan.ema_pairs:
      copy = At(f"params/heads/{pair.head}", tuple(pair.path))
      self.add(f"ema {pair.head}/{'/'.join(pair.path)}", EmaSpec(),
               (copy, f"params/backbone/{pair.source}", float(pair.decay)), copy,
               module_of[pair.head])
    trunks = {h: len(head.trunk()) for h, (head, _) in self.factored.items()
              if callable(getattr(head, "trunk", None))}
    for top, p in self.parts:
      grad = f"grad/{top}/{p}"
      if top == "heads" and p in trunks:
        grad = Union(({"inner": f"{grad}/inner"},
                      *(f"{grad}/stage{n}" for n in range(trunks[p]))))
      self.add(f"update {top}/{p}", UpdateSpec((top, p)),
               (grad, f"opt/{top}/{p}", f"params/{top}/{p}"),
               (f"params/{top}/{p}", f"opt/{top}/{p}"), module_of[p])
    new_stats = {"backbone": {n: f"new_stats/backbone/{n}" for n in self.plan.backbone.block_names},
                 "heads": {h: v for (_, h), v in sorted(self.new_stats.items())}}
    old_stats = {top: {p: f"stats/{top}/{p}" for t, p in self.parts if t == top}
                 for top in ("backbone", "heads")}
    self.add("statistics and metrics", FinishSpec(),
             ("step", old_stats, new_stats, tuple(self.losses), tuple(self.sqs)),
             ("step", old_stats, "metrics/step"), None)


def mark_final(calls: list[Call]) -> list[Call]:
  """Sets each spec's final flags: a call is final for a gradient buffer it writes last."""
  last = {}
  for k, c in enumerate(calls):
    for n in names(c.outputs):
      if n.startswith("grad/"):
        last[n] = k
  out = []
  for k, c in enumerate(calls):
    done = lambda n: last.get(n) == k
    spec = c.program
    if isinstance(spec, UnitSpec):
      g_blocks, g_heads = c.outputs[0], c.outputs[1]
      spec = dataclasses.replace(spec, final_module=done(g_blocks[0]),
                                 final_heads=tuple(map(done, g_heads)))
    elif isinstance(spec, (HeadSpec, TrunkBackSpec)):
      spec = dataclasses.replace(spec, final=done(c.outputs[0]))
    elif isinstance(spec, BackSpec):
      spec = dataclasses.replace(spec, final=done(c.outputs[0][0]))
    out.append(dataclasses.replace(c, program=spec))
  return out
