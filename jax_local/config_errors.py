"""The error an impossible config raises, and the checks that word it (docs/design.md §5).

Every message names the field as the user writes it (`config.<path>=<value>`) and what would be
valid, so that launch.py can print it as one line (`jax_local.usage_errors`).
"""
from __future__ import annotations


class ConfigError(ValueError):
  """A config field holds a value that cannot run."""


def choice(field: str, value, valid) -> None:
  if value not in valid:
    raise ConfigError(f"config.{field}={value!r} is not valid; choose one of: "
                      f"{', '.join(map(str, valid))}")


def positive(field: str, value) -> None:
  if not value > 0:
    raise ConfigError(f"config.{field}={value!r} must be > 0")


def unit(field: str, value) -> None:
  if not 0.0 <= value <= 1.0:
    raise ConfigError(f"config.{field}={value!r} must be in [0, 1]")


def integer(field: str, value, low: int, high: int | None = None, why: str = "") -> None:
  """value is an int (not a bool) in low..high (no upper bound if high is None)."""
  ok = isinstance(value, int) and not isinstance(value, bool) and value >= low and (
      high is None or value <= high)
  if not ok:
    bounds = f"in {low}..{high}" if high is not None else f">= {low}"
    raise ConfigError(f"config.{field}={value!r} must be an integer {bounds}{why}")
