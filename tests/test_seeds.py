"""The seed driver: seed lists, skipping finished seeds, one launch.py process per seed."""
import json
import os
import signal

import pytest

from jax_local import seeds


def test_seed_list():
  assert seeds.seed_list("3") == [0, 1, 2]
  assert seeds.seed_list("0,4,7") == [0, 4, 7]
  assert seeds.seed_list("5,") == [5]
  for bad in ("0", "a,b", ""):
    with pytest.raises(ValueError, match="--seeds"):
      seeds.seed_list(bad)


class _Process:
  """Stands in for launch.py: records its command, writes summary.json unless told to fail."""
  commands = []

  def __init__(self, cmd, cwd):
    self.commands.append(cmd)
    workdir = next(a.split("=", 1)[1] for a in cmd if a.startswith("--workdir="))
    seed = int(next(a.split("=", 1)[1] for a in cmd if a.startswith("--config.seed=")))
    self.status = {2: 1, 3: seeds.EXIT_INTERRUPTED}.get(seed, 0)
    if self.status == 0:
      os.makedirs(workdir)
      with open(os.path.join(workdir, "summary.json"), "w") as f:
        json.dump({}, f)

  def wait(self):
    return self.status

  def send_signal(self, signum):
    pass


def test_run_seeds_skips_finished_and_stops_when_interrupted(tmp_path, monkeypatch):
  monkeypatch.setattr(seeds.subprocess, "Popen", _Process)
  _Process.commands = []
  root = str(tmp_path)
  os.makedirs(seeds.workdir(root, 1))
  open(os.path.join(seeds.workdir(root, 1), "summary.json"), "w").write("{}")
  statuses = seeds.run_seeds("configs/x.py:dgl", root, [0, 1, 2, 3, 4], ["--config.a=1"],
                             log=lambda *_: None)
  # seed 1 was finished, seed 2 failed and the sweep went on, seed 3 was signalled: stop
  assert statuses == {1: 0, 0: 0, 2: 1, 3: seeds.EXIT_INTERRUPTED}
  assert [c[-2:] for c in _Process.commands] == [
      ["--config.seed=0", "--config.a=1"], ["--config.seed=2", "--config.a=1"],
      ["--config.seed=3", "--config.a=1"]]
  assert _Process.commands[0][1].endswith("launch.py")
  assert _Process.commands[0][2:4] == ["--config=configs/x.py:dgl",
                                       f"--workdir={seeds.workdir(root, 0)}"]
  _Process.commands = []
  assert seeds.run_seeds("configs/x.py:dgl", root, [0, 1], [], log=lambda *_: None) == {0: 0, 1: 0}
  assert _Process.commands == []  # both finished: nothing runs again


class _KilledBeforeItsHandler(_Process):
  """A launch.py that this driver's SIGTERM reaches before launch.py handles signals: the
  signal arrives while the driver waits, and the process dies of it (status -15)."""

  def wait(self):
    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)   # the driver is signalled
    return -signal.SIGTERM

  forwarded = []

  def send_signal(self, signum):
    self.forwarded.append(signum)


def test_a_signal_to_the_driver_stops_the_sweep_whatever_the_seed_returned(tmp_path, monkeypatch):
  monkeypatch.setattr(seeds.subprocess, "Popen", _KilledBeforeItsHandler)
  _Process.commands, _KilledBeforeItsHandler.forwarded = [], []
  handler = signal.getsignal(signal.SIGTERM)
  statuses = seeds.run_seeds("configs/x.py:dgl", str(tmp_path), [0, 1], [], log=lambda *_: None)
  assert statuses == {0: seeds.EXIT_INTERRUPTED}   # seed 1 never started
  assert len(_Process.commands) == 1
  assert _KilledBeforeItsHandler.forwarded == [signal.SIGTERM]   # passed on to the running seed
  assert signal.getsignal(signal.SIGTERM) is handler   # the driver's own handler is back
