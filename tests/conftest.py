"""Test setup: 8 fake CPU devices for sharding code, one prepared Fashion-MNIST per session, and
runs on one device unless a test module is marked `multi_device`."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def fashion_mnist(tmp_path_factory):
  """The Dataset of Debian's Fashion-MNIST, read once per session from its idx files."""
  from configs import common
  from jax_local.data import input_pipeline
  c = common.get_config().data
  c.name = "fashion_mnist"
  return input_pipeline.build_dataset(c, seed=0)


@pytest.fixture(scope="module")
def fast_compile():
  """XLA with most optimisations off while a test module runs, for functional tests of real
  networks (cheaper CPU compiles, as flax's train_test.py does; docs/jax_notes.md §11); not for
  memory tests. Numerics are unchanged up to float rounding. Use with
  `pytestmark = pytest.mark.usefixtures("fast_compile")`."""
  import jax
  old = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", old)


@pytest.fixture(autouse=True)
def one_device_mesh(request, monkeypatch):
  """Training runs use a one-device mesh unless the module says `pytest.mark.multi_device`:
  the sharded paths have their own tests (test_sharding, test_distributed), and 8 emulated
  devices on 2 cores slow the others (test_faults, with its subprocesses also on one device:
  168 s -> 97 s on the shared machine)."""
  if request.node.get_closest_marker("multi_device"):
    return
  import jax
  from jax_local import parallel
  all_devices = parallel.make_mesh
  monkeypatch.setattr(parallel, "make_mesh",
                      lambda devices=None: all_devices(jax.devices()[:1] if devices is None
                                                       else devices))
