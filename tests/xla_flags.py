"""XLA_FLAGS for the test processes (the pytest workers and the processes they launch).

Without importing JAX, which reads XLA_FLAGS once, when its CPU backend starts.
"""
from importlib import metadata

# XLA:CPU's older fusion code generator. The tests compile hundreds of small programs and
# compiling, not running, is most of their time; this generator compiles the same programs
# faster (BENCHMARKS.md "Test suite time"). The flag exists in the jaxlib releases listed; an
# unknown flag makes XLA abort, so another release runs without it.
FAST_CODEGEN = "--xla_cpu_use_fusion_emitters=false"
FAST_CODEGEN_JAXLIB = ("0.10.",)


def xla_flags(devices: int | None = None) -> str:
  """`devices` emulated CPU devices (None: XLA's default, one) and the faster code generator."""
  flags = [] if devices is None else [f"--xla_force_host_platform_device_count={devices}"]
  if metadata.version("jaxlib").startswith(FAST_CODEGEN_JAXLIB):
    flags.append(FAST_CODEGEN)
  return " ".join(flags)
