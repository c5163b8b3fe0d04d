"""User mistakes on the command line end in one line on stderr and exit status 2, no traceback.

  usage_errors.run(main)      # in place of absl.app.run(main)

Covered while the flags are parsed: a config file that cannot be loaded, an unknown config field (`--config.optim.lrr=1`: the close
names of that level), an option of a base method or plug-in that the config does not select
(`--config.method.man.ema_decay=0.9` on a DGL run: the active method), a field at the wrong level (`--config.batch_size=256`: the dotted paths of
the config's fields of that name, e.g. data.batch_size) and every other absl flag error; and
raised by `main`: `app.UsageError`, `config_validation.ConfigError` (an impossible config) and
`workdir_lock.WorkdirUnwritable`. The line reads "<program>: error: <message>" (program: the
script's name, or "python -m <module>").
"""
from __future__ import annotations

import difflib
import os
import re
import sys

from absl import app, flags

EXIT_USAGE = 2


def fail(message: str) -> None:
  """Prints "<program>: error: <message>" as one line on stderr and exits with EXIT_USAGE."""
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  if spec is not None and spec.name:   # python -m jax_local.memory
    prog = "python -m " + spec.name.removesuffix(".__main__")
  else:
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "jax_local"
  line = " ".join(str(message).split())
  print(f"{prog}: error: {line}", file=sys.stderr, flush=True)
  sys.exit(EXIT_USAGE)


def _fields(node, prefix=""):
  """Dotted paths of every field (leaf or section) of a ConfigDict."""
  for key in node.keys():
    path = f"{prefix}{key}"
    yield path
    value = node[key]
    if hasattr(value, "keys") and not isinstance(value, (str, bytes)):
      yield from _fields(value, f"{path}.")


def unknown_field_message(config, path: str) -> str | None:
  """For an override path of `config` ("optim.lrr"), the one-line error naming the first part
  that does not exist and what was probably meant; None if the whole path exists."""
  node, parts = config, path.split(".")
  for i, part in enumerate(parts):
    if hasattr(node, "keys") and part in node.keys():
      node = node[part]
      continue
    if not hasattr(node, "keys"):
      parent = ".".join(parts[:i])
      return f"--config.{path}: config.{parent} is a value, not a section"
    here = ".".join(parts[:i])
    if here == "method":
      unselected = _unselected_option(node, path, part)
      if unselected:
        return unselected
    where = f"config.{here}" if here else "config"
    rest = ".".join(parts[i:])
    elsewhere = [p for p in _fields(config) if p == rest or p.endswith("." + rest)]
    if elsewhere:
      hint = "did you mean " + " or ".join(f"--config.{p}" for p in elsewhere[:3]) + "?"
    else:
      close = difflib.get_close_matches(part, list(node.keys()), n=3)
      prefix = f"{here}." if here else ""
      hint = ("did you mean " + " or ".join(f"--config.{prefix}{c}" for c in close) + "?"
              if close else f"{where} has: {', '.join(sorted(node.keys()))}")
    return f"--config.{path}: {where} has no field {part!r}; {hint}"
  return None


def _unselected_option(method, path: str, part: str) -> str | None:
  """The message for an option of a base or plug-in that `method` (config.method) does not
  select, None if no registered one owns `part`."""
  from jax_local import config_validation   # the registries import flax: only when needed
  owner = config_validation.owner(part)
  if owner is None:
    return None
  return (f"--config.{path}: config.method has no field {part!r}: it is an option of {owner}, "
          f"and this config runs {config_validation.active(method)}; choose the method and "
          "plug-in in the config argument (e.g. configs/cifar.py:cifar10,32,16,dgl,man)")


def _overrides(argv, name="config"):
  pattern = re.compile(rf"^--?(?:no)?{name}\.([\w.]+)(?:=|$)")
  return [m.group(1) for m in map(pattern.match, argv) if m]


def _config_argument(argv, name="config"):
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      return arg.split("=", 1)[1]
    if arg == f"--{name}" and i + 1 < len(argv):
      return argv[i + 1]
  return None


def _override_error(argv, error: Exception) -> str:
  """The one-line message for an AttributeError/KeyError that an override raised."""
  text = str(error.args[0] if error.args else error)
  try:
    from ml_collections.config_flags import config_flags
    source = _config_argument(argv)
    config = config_flags.ConfigFileFlagParser("config").parse(source) if source else None
  except Exception:  # noqa: BLE001  (the config file itself failed: report the original error)
    config = None
  if config is not None:
    for path in _overrides(argv):
      message = unknown_field_message(config, path)
      if message:
        return message
  return " ".join(text.replace("\\n", "\n").strip("'\"").split())


def parse_flags(argv):
  """absl's flag parsing with the errors of the module doc reported by `fail`."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e))
  except (AttributeError, KeyError) as e:
    fail(_override_error(argv, e))
  if "config" in flags.FLAGS and flags.FLAGS["config"].value is not None:
    try:  # ml_collections defers a config file that cannot be read to its first use
      flags.FLAGS["config"].value.keys()
    except OSError as e:
      lines = [line.strip() for line in str(e).splitlines() if line.strip()]
      fail(f"--config={_config_argument(argv)}: cannot load the config file ({lines[-1]})")
  return rest


def run(main) -> None:
  """absl.app.run(main) with user errors reported by `fail`."""

  def wrapped(argv):
    from jax_local import config_validation, workdir_lock
    try:
      return main(argv)
    except (app.UsageError, config_validation.ConfigError, workdir_lock.WorkdirUnwritable) as e:
      fail(str(e))

  app.run(wrapped, flags_parser=parse_flags)
