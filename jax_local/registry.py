"""Registries of named specs: base methods and plug-ins, selected by the names users write
(docs/design.md §2-§3).

A `Method` (a base: `config.method.name`) and a `Plugin` (`config.method.plugin`) each own
- `defaults()`: the fields of `config.method` that belong to it, with their default values (a
  config holds the fields of its selected base and plug-in only);
- `validate`: the checks of those fields, run once before anything is built (raises
  `config_errors.ConfigError`);
- the plan: a base builds the plan of a backbone cut by a split, a plug-in rewrites a base's plan;
- what composes: a base's `head` is the local head a plug-in puts on its terms (None: the base
  takes no plug-in, `no_plugin` says why); a plug-in's `composes(base)` says whether it composes
  with a base (default: every base with a `head`).
Adding one is its file plus one line in the registry of `jax_local.methods` or
`jax_local.plugins`; `Registry.register` adds one from outside (a test's toy plug-in).
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Iterator

from jax_local.config_errors import ConfigError


def _no_fields() -> dict[str, Any]:
  return {}


def _no_checks(*args) -> None:
  del args


def has_head(base: "Method") -> bool:
  return base.head is not None


def _cross_entropy_only(mc, r: float) -> tuple[float, float]:
  del mc, r
  return 0.0, 1.0


@dataclasses.dataclass(frozen=True)
class Method:
  """A base method. plan(mc, backbone, split, num_classes) -> Plan; validate(mc, split);
  head(mc, num_classes, (λ_rec, λ_cls)) -> the head of a local term, λ mattering only to heads
  with a decoder; lambdas(mc, r) -> (λ_rec, λ_cls) of a plug-in term at schedule ratio r
  (docs/methods.md §5.2); has_decoder(mc): whether `head` decodes the image (HPFF's patches,
  §7.2); min_modules: the fewest modules its split may have."""
  name: str
  plan: Callable
  defaults: Callable[[], dict[str, Any]] = _no_fields
  validate: Callable = _no_checks
  head: Callable | None = None
  lambdas: Callable = _cross_entropy_only
  has_decoder: Callable = lambda mc: False
  min_modules: int = 2
  no_plugin: str = ""


@dataclasses.dataclass(frozen=True)
class Plugin:
  """A plug-in. rewrite(mc, plan, split, num_classes, base: Method) -> Plan;
  validate(mc, split, base)."""
  name: str
  rewrite: Callable
  defaults: Callable[[], dict[str, Any]] = _no_fields
  validate: Callable = _no_checks
  composes: Callable[[Method], bool] = has_head


class Registry:
  """Specs by name; `field` is the config field that selects one (e.g. "method.name")."""

  def __init__(self, field: str, specs):
    self.field = field
    self._specs = {}
    for spec in specs:
      self.register(spec)

  def register(self, spec):
    if spec.name in self._specs:
      raise ValueError(f"{self.field}: {spec.name!r} is registered already")
    self._specs[spec.name] = spec
    return spec

  @contextlib.contextmanager
  def registered(self, spec) -> Iterator[Any]:
    """`spec` registered for the duration of a with-block."""
    self.register(spec)
    try:
      yield spec
    finally:
      del self._specs[spec.name]

  def names(self) -> tuple[str, ...]:
    return tuple(self._specs)

  def __contains__(self, name) -> bool:
    return name in self._specs

  def get(self, name):
    """The spec of `name`; ConfigError naming the valid names if there is none."""
    if name not in self._specs:
      raise ConfigError(f"config.{self.field}={name!r} is not valid; choose one of: "
                        f"{', '.join(self._specs)}")
    return self._specs[name]
