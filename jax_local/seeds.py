"""Train one config under several seeds, resumably, then print its mean ± std.

  python -m jax_local.seeds --config=configs/fashion_mnist_quickstart.py:dgl \
      --root=runs/qs_dgl --seeds=3 [--config.field=value ...]

Seed s trains in `<root>/seed<s>` through `launch.py --config.seed=s` (one process per seed, so
a crash loses at most that seed's steps since its last checkpoint). A seed whose workdir holds
summary.json is skipped; an interrupted one resumes from its newest checkpoint. So rerunning the
same command after a crash, a reboot or the end of a session continues where it stopped. Other
`--config.*` flags are passed to every seed unchanged. At the end the seeds' table from
`jax_local.compare` is printed (one row, mean ± std (min–max)).

Exit status: 0 every seed finished; 75 interrupted by SIGTERM/SIGINT (rerun to resume); 1 a
seed failed (the others still ran).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXIT_INTERRUPTED = 75


def seed_list(spec: str) -> list[int]:
  """"3" -> [0, 1, 2]; "0,4,7" -> [0, 4, 7]."""
  parts = [p for p in spec.split(",") if p.strip()]
  try:
    values = [int(p) for p in parts]
  except ValueError:
    values = []
  if not values:
    raise ValueError(f"--seeds={spec!r}: give a count (3) or a comma list (0,1,2)")
  if len(values) == 1 and "," not in spec:
    if values[0] < 1:
      raise ValueError(f"--seeds={spec!r}: the count must be >= 1")
    return list(range(values[0]))
  return values


def workdir(root: str, seed: int) -> str:
  return os.path.join(root, f"seed{seed}")


def is_finished(path: str) -> bool:
  return os.path.exists(os.path.join(path, "summary.json"))


def launch_command(config: str, path: str, seed: int, overrides: list[str]) -> list[str]:
  return [sys.executable, os.path.join(ROOT, "launch.py"), f"--config={config}",
          f"--workdir={path}", f"--config.seed={seed}", *overrides]


def run_seeds(config: str, root: str, seeds: list[int], overrides: list[str],
              log=print) -> dict[int, int]:
  """Trains every unfinished seed in turn; returns {seed: exit status} (0 for skipped ones).

  Stops early, returning what ran, when a seed's process exits with EXIT_INTERRUPTED (it was
  signalled) or this process receives SIGTERM/SIGINT (forwarded to the running seed, which
  checkpoints). In the second case the running seed is reported as EXIT_INTERRUPTED whatever its
  process returned: a signal that reaches it before launch.py handles signals ends it without a
  checkpoint (status -15), and the sweep must still stop there.
  """
  statuses, todo = {}, []
  for s in seeds:
    if is_finished(workdir(root, s)):
      statuses[s] = 0
    else:
      todo.append(s)
  log(f"{len(seeds) - len(todo)} of {len(seeds)} seeds already finished in {root}"
      + (f"; training seeds {todo}" if todo else ""))
  started, times = time.time(), []
  for i, s in enumerate(todo):
    cmd = launch_command(config, workdir(root, s), s, overrides)
    log(f"seed {s} ({i + 1}/{len(todo)}): {' '.join(cmd)}")
    t0 = time.time()
    proc, received = subprocess.Popen(cmd, cwd=ROOT), []

    def forward(signum, _frame):
      received.append(signum)
      proc.send_signal(signum)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
      statuses[s] = proc.wait()
    finally:
      for sig, handler in old.items():
        signal.signal(sig, handler)
    if received:
      statuses[s] = EXIT_INTERRUPTED
    times.append(time.time() - t0)
    left = len(todo) - i - 1
    eta = f"; about {left * sum(times) / len(times) / 60:.0f} min for the {left} left" if left \
        else ""
    log(f"seed {s}: exit status {statuses[s]} after {times[-1] / 60:.1f} min "
        f"({(time.time() - started) / 60:.1f} min so far{eta})")
    if statuses[s] == EXIT_INTERRUPTED:
      break
  return statuses


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(prog="python -m jax_local.seeds", description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--config", required=True, help="as launch.py's --config (FILE[:ARG])")
  ap.add_argument("--root", required=True, help="seed s trains in ROOT/seed<s>")
  ap.add_argument("--seeds", default="3", help="a count (3 = seeds 0,1,2) or a list (0,4,7)")
  args, rest = ap.parse_known_args(argv)
  bad = [a for a in rest if not a.startswith("--config.")]
  if bad:
    ap.error(f"unknown arguments {bad}; only --config.FIELD=VALUE overrides are passed on")
  try:
    seeds = seed_list(args.seeds)
  except ValueError as e:
    ap.error(str(e))
  statuses = run_seeds(args.config, args.root, seeds, rest)
  from jax_local import compare
  done = [workdir(args.root, s) for s in seeds
          if os.path.exists(os.path.join(workdir(args.root, s), "config.json"))]
  if done:
    print(compare.format_table(compare.group_seeds([compare.read_run(d) for d in done])))
  if any(v == EXIT_INTERRUPTED for v in statuses.values()) or len(statuses) < len(seeds):
    return EXIT_INTERRUPTED
  return 1 if any(statuses.values()) else 0


if __name__ == "__main__":
  sys.exit(main())
