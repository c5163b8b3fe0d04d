"""The workdir lock: a live holder refuses a second taker, a dead holder's lock is taken over
with a warning, release leaves nothing behind. (Two real launch.py runs on one workdir:
tests/test_faults.py.)"""
import json
import logging
import os
import signal
import socket
import subprocess
import sys

import pytest

from jax_local import workdir_lock
from jax_local.workdir_lock import WorkdirLock, WorkdirLocked, WorkdirUnwritable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_held_lock_refuses_a_second_holder_and_release_frees_it(tmp_path):
  workdir = tmp_path / "run"
  with WorkdirLock(str(workdir)):
    owner = json.loads((workdir / workdir_lock.LOCK_FILE).read_text())
    assert (owner["host"], owner["pid"]) == (socket.gethostname(), os.getpid())
    with pytest.raises(WorkdirLocked, match=rf"in use by a running job \(pid {os.getpid()} on "):
      WorkdirLock(str(workdir)).acquire()
  assert not workdir.exists()  # the lock created the workdir and nothing else was written
  (workdir / "keep").parent.mkdir()
  (workdir / "keep").write_text("x")
  with WorkdirLock(str(workdir)) as lock:
    assert lock.taken_over is None
  assert os.listdir(workdir) == ["keep"]


def test_the_lock_of_a_killed_process_is_taken_over_with_a_warning(tmp_path, caplog):
  workdir = tmp_path / "run"
  code = ("import os, signal, sys; from jax_local.workdir_lock import WorkdirLock; "
          f"WorkdirLock({str(workdir)!r}).acquire(); print('held', os.getpid(), flush=True); "
          "os.kill(os.getpid(), signal.SIGKILL)")
  dead = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
  assert dead.returncode == -signal.SIGKILL and "held" in dead.stdout, dead.stderr
  left = json.loads((workdir / workdir_lock.LOCK_FILE).read_text())
  assert left["pid"] == int(dead.stdout.split()[1])
  with caplog.at_level(logging.WARNING, logger="jax_local"):
    with WorkdirLock(str(workdir)) as lock:
      assert lock.taken_over["pid"] == left["pid"]
  assert any(f"pid {left['pid']} on {socket.gethostname()}" in r.getMessage()
             and "no longer running" in r.getMessage() for r in caplog.records), caplog.text


def test_a_lock_naming_a_live_process_of_this_host_is_refused_without_its_flock(tmp_path):
  """The identity check holds where the filesystem gives no flock: a lock file (no flock held)
  naming a running process of this host with its start time is not taken."""
  workdir = tmp_path / "run"
  workdir.mkdir()
  sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    owner = {"host": socket.gethostname(), "pid": sleeper.pid, "start_time": 0.0,
             "process_start": workdir_lock._process_start(sleeper.pid)}
    (workdir / workdir_lock.LOCK_FILE).write_text(json.dumps(owner))
    with pytest.raises(WorkdirLocked, match=f"pid {sleeper.pid} on "):
      WorkdirLock(str(workdir)).acquire()
  finally:
    sleeper.kill()
    sleeper.wait()
  with WorkdirLock(str(workdir)) as lock:  # now dead: taken over
    assert lock.taken_over["pid"] == sleeper.pid


def test_an_unwritable_workdir_is_one_clear_error(tmp_path):
  (tmp_path / "file").write_text("")
  with pytest.raises(WorkdirUnwritable, match=r"the workdir .*/file/run is not writable"):
    WorkdirLock(str(tmp_path / "file" / "run")).acquire()
