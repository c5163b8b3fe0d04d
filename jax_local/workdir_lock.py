"""One live run per workdir: `workdir/run.lock`, held from before the first write to the exit.

  with WorkdirLock(workdir):      # raises WorkdirLocked if a live run holds it
    ...train...

The file holds the owner's identity as JSON ({"host", "pid", "start_time", "argv"}) and the
owner keeps an exclusive `flock` on it while it runs. The kernel drops the flock when its
process dies, however it dies, so a lock file whose flock can be taken belongs to a dead run: it
is taken over with a warning naming the dead owner (a requeued job resumes). The identity is a
second check: a lock that names this host and a process that is still running with the same
start time is refused even if its flock could be taken (a filesystem without flock support).

Across hosts the flock relies on the shared filesystem's locks (NFS lockd; Lustre mounted with
`-o flock`). On release the file is removed, and a workdir that the lock itself created and that
is still empty is removed too, so a run that stops before writing anything leaves nothing behind.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time

LOCK_FILE = "run.lock"
EXIT_LOCKED = 5


class WorkdirLocked(RuntimeError):
  """Another live run holds the workdir."""


class WorkdirUnwritable(OSError):
  """The workdir cannot be created or written."""


def check_writable(workdir: str) -> None:
  """Raises WorkdirUnwritable unless `workdir` is a writable directory or could be created (its
  nearest existing ancestor is a writable directory); creates nothing."""
  path = os.path.abspath(workdir)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  problem = ("not a directory" if not os.path.isdir(path) else
             "permission denied" if not os.access(path, os.W_OK | os.X_OK) else None)
  if problem:
    raise WorkdirUnwritable(_unwritable(workdir, f"{path}: {problem}"))


def _unwritable(workdir: str, why) -> str:
  return (f"the workdir {os.path.abspath(workdir)} is not writable ({why}); pass a --workdir "
          "this user can create and write")


def _process_start(pid: int) -> str | None:
  """The kernel's start time of `pid` (clock ticks since boot, /proc), or None if unknown."""
  try:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
      return f.read().rsplit(")", 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def describe(owner: dict) -> str:
  started = owner.get("start_time")
  when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
          if isinstance(started, (int, float)) else "?")
  return f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, started {when}"


class WorkdirLock:
  """The lock of the module doc on `workdir` (created if missing)."""

  def __init__(self, workdir: str):
    self.workdir = os.path.abspath(workdir)
    self.path = os.path.join(self.workdir, LOCK_FILE)
    self._fd = None
    self._created_dir = False
    self.taken_over: dict | None = None   # the dead owner's identity, if the lock was stale

  def acquire(self) -> "WorkdirLock":
    """Takes the lock (see the module doc); raises WorkdirLocked or WorkdirUnwritable."""
    try:
      self._created_dir = not os.path.isdir(self.workdir)
      os.makedirs(self.workdir, exist_ok=True)
      while True:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
          fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
          os.close(fd)
          if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
          raise WorkdirLocked(self._held_message(self._read_path())) from None
        if os.path.exists(self.path) and os.path.samestat(os.fstat(fd), os.stat(self.path)):
          break
        os.close(fd)  # the previous owner removed the file between our open and flock: retry
      previous = self._read_fd(fd)
      if previous and previous.get("pid") is not None:
        if self._same_live_process(previous):
          os.close(fd)
          raise WorkdirLocked(self._held_message(previous))
        self.taken_over = previous
        logging.getLogger("jax_local").warning(  # run_log.LOG, without importing run_log
            "taking over %s: its owner (%s) is no longer running", self.path, describe(previous))
      me = {"host": socket.gethostname(), "pid": os.getpid(), "start_time": time.time(),
            "process_start": _process_start(os.getpid()), "argv": sys.argv}
      os.ftruncate(fd, 0)
      os.pwrite(fd, json.dumps(me).encode(), 0)
      os.fsync(fd)
    except WorkdirLocked:
      self._remove_created_dir()
      raise
    except OSError as e:
      self._remove_created_dir()
      raise WorkdirUnwritable(_unwritable(self.workdir, e.strerror or e)) from None
    self._fd = fd
    return self

  def release(self) -> None:
    if self._fd is None:
      return
    try:
      os.unlink(self.path)
    except OSError:
      pass
    os.close(self._fd)  # drops the flock
    self._fd = None
    self._remove_created_dir()

  def _remove_created_dir(self) -> None:
    if self._created_dir:
      try:
        os.rmdir(self.workdir)  # only if empty
      except OSError:
        pass

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()

  def _held_message(self, owner: dict | None) -> str:
    who = describe(owner) if owner else "another process"
    return (f"workdir {self.workdir} is in use by a running job ({who}); wait for it to end, "
            f"or use another --workdir")

  @staticmethod
  def _same_live_process(owner: dict) -> bool:
    """`owner` is a process of this host that is still running (the same start time)."""
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
      return False
    if owner["pid"] == os.getpid() or not _alive(owner["pid"]):
      return False
    started = owner.get("process_start")
    return started is None or started == _process_start(owner["pid"])

  def _read_path(self) -> dict | None:
    try:
      with open(self.path, encoding="utf-8") as f:
        return json.loads(f.read() or "null")
    except (OSError, ValueError):
      return None

  @staticmethod
  def _read_fd(fd) -> dict | None:
    try:
      data = os.pread(fd, 1 << 16, 0)
      return json.loads(data.decode() or "null")
    except ValueError:
      return None
