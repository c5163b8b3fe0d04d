"""Test setup: 8 fake CPU devices for sharding code, one Fashion-MNIST per session, one XLA
compilation cache per session, the longest modules first, and runs on one device unless a test
module is marked `multi_device`."""
import os

from tests.xla_flags import xla_flags

os.environ.setdefault("XLA_FLAGS", xla_flags(8))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

# The modules that take longest (compiles of many small programs, real launch.py processes) go
# first, so that the two xdist workers (`--dist loadfile`) finish at about the same time.
LONGEST_FIRST = ("test_pipelined.py", "test_sequential.py", "test_faults.py", "test_train.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: order kept within


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(tmp_path_factory):
  """One persistent XLA compilation cache for the session, holding every program however quick
  its compile: the tests build many identical small programs (the same tiny heads and blocks
  under several executors), and each is compiled once per session instead of once per test."""
  import jax
  base = tmp_path_factory.getbasetemp()   # pytest-N/popen-gwK under xdist: shared by workers
  cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "xla_cache"
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  old = {n: getattr(jax.config, n) for n in names}
  for name, value in zip(names, (str(cache), 0.0, -1)):
    jax.config.update(name, value)
  yield
  for name, value in old.items():
    jax.config.update(name, value)


@pytest.fixture(scope="session")
def fashion_mnist(tmp_path_factory):
  """The Dataset of Debian's Fashion-MNIST, read once per session from its idx files."""
  from configs import common
  from jax_local.data import input_pipeline
  c = common.get_config().data
  c.name = "fashion_mnist"
  return input_pipeline.build_dataset(c, seed=0)


@pytest.fixture(scope="session", autouse=True)
def fast_compile():
  """XLA with most optimisations off (cheaper CPU compiles, as flax's train_test.py does;
  docs/jax_notes.md §11) for the whole session, so that module- and session-scoped fixtures
  (trained runs, shared steps) compile cheaply too. Numerics are unchanged up to float rounding.
  Tests marked `full_optimisation` compile as users do (`full_optimisation` below)."""
  import jax
  old = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", True)
  yield
  jax.config.update("jax_disable_most_optimizations", old)


@pytest.fixture(autouse=True)
def full_optimisation(request):
  """Every optimisation on for tests marked `pytest.mark.full_optimisation`: those that assert
  compiled memory sizes, which depend on the optimisations."""
  if not request.node.get_closest_marker("full_optimisation"):
    yield
    return
  import jax
  jax.config.update("jax_disable_most_optimizations", False)
  yield
  jax.config.update("jax_disable_most_optimizations", True)


@pytest.fixture(autouse=True)
def one_device_mesh(request, monkeypatch):
  """Training runs use a one-device mesh unless the module says `pytest.mark.multi_device`:
  the sharded paths have their own tests (test_sharding, test_distributed), and 8 emulated
  devices on 2 cores slow the others (test_faults runs its subprocesses on one device too)."""
  if request.node.get_closest_marker("multi_device"):
    return
  import jax
  from jax_local import parallel
  all_devices = parallel.make_mesh
  monkeypatch.setattr(parallel, "make_mesh",
                      lambda devices=None: all_devices(jax.devices()[:1] if devices is None
                                                       else devices))
