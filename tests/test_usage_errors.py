"""User mistakes end in one line on stderr with exit status 2 and leave no files: real launch.py
and `python -m jax_local.memory` processes (run side by side), and the field hints in-process."""
import os
import subprocess
import sys

import pytest

from configs import fashion_mnist_quickstart
from jax_local import usage_errors
from tests.xla_flags import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = f"--config={ROOT}/configs/fashion_mnist_quickstart.py"


@pytest.mark.parametrize("path, message", [
    ("optim.lrr", "--config.optim.lrr: config.optim has no field 'lrr'; did you mean "
                  "--config.optim.lr?"),
    ("batch_size", "--config.batch_size: config has no field 'batch_size'; did you mean "
                   "--config.data.batch_size?"),
    ("method.hilo.kk", "--config.method.hilo.kk: config.method.hilo has no field 'kk'; did you "
                       "mean --config.method.hilo.k?"),
    ("data.batch_size.x", "--config.data.batch_size.x: config.data.batch_size is a value, not a "
                          "section"),
    ("zzz", "--config.zzz: config has no field 'zzz'; config has: checkpoint_every_steps, data,"),
    ("optim.lr", None),
])
def test_unknown_field_names_what_was_meant(path, message):
  got = usage_errors.unknown_field_message(fashion_mnist_quickstart.get_config("dgl,hpff"), path)
  assert got == message if message is None or not message.endswith(",") else \
      got.startswith(message), got


def test_user_errors_print_one_line_exit_2_and_leave_nothing(tmp_path):
  env = {**os.environ, "XLA_FLAGS": xla_flags(1)}
  (tmp_path / "file").write_text("")
  cases = {
      "wrong_level": ([sys.executable, "-m", "jax_local.memory", QUICKSTART,
                       "--config.batch_size=256"],
                      "python -m jax_local.memory: error: --config.batch_size: config has no field 'batch_size'; "
                      "did you mean --config.data.batch_size?"),
      "missing_config": ([sys.executable, "launch.py", f"--config={tmp_path / 'none.py'}",
                          f"--workdir={tmp_path / 'missing_config'}"],
                         f"launch.py: error: --config={tmp_path / 'none.py'}: cannot load the "
                         "config file ([Errno 2] No such file or directory"),
      "unknown_method": ([sys.executable, "launch.py", f"{QUICKSTART}:backprop",
                          f"--workdir={tmp_path / 'unknown_method'}"],
                         "launch.py: error: config.method.name='backprop' is not valid; choose "
                         "one of: bp, greedy, dgl, infopro, predsim, auglocal"),
      "unselected_option": ([sys.executable, "launch.py", QUICKSTART,
                             "--config.method.man.ema_decay=0.9",
                             f"--workdir={tmp_path / 'unselected_option'}"],
                            "launch.py: error: --config.method.man.ema_decay: config.method has "
                            "no field 'man': it is an option of plug-in 'man', and this config "
                            "runs method.name='dgl' with method.plugin='none'"),
      "unwritable": ([sys.executable, "launch.py", QUICKSTART,
                      f"--workdir={tmp_path / 'file' / 'run'}"],
                     f"launch.py: error: the workdir {tmp_path / 'file' / 'run'} is not writable"),
  }
  procs = {name: subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
           for name, (cmd, _) in cases.items()}
  for name, proc in procs.items():
    out, err = proc.communicate(timeout=300)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == usage_errors.EXIT_USAGE, (name, err[-3000:])
    assert len(lines) == 1 and lines[0].startswith(cases[name][1]), (name, err[-3000:])
    assert "Traceback" not in err and not out.strip(), (name, out, err)
  assert sorted(os.listdir(tmp_path)) == ["file"]  # no workdir was created


def test_local_device_ids_pick_devices_or_are_refused():
  """With one process, --local_device_ids selects the mesh's devices (conftest: 8 CPU devices)."""
  import jax
  from absl import app
  import launch
  assert launch.local_devices(None) is None
  assert launch.local_devices(["3", "1"]) == [jax.devices()[3], jax.devices()[1]]
  for ids in (["8"], ["1", "1"], ["x"]):
    with pytest.raises(app.UsageError, match=r"--local_device_ids=.*: (this process has devices "
                       r"0, 1, 2, 3, 4, 5, 6, 7 \(each id at most once\)|give integers)"):
      launch.local_devices(ids)
