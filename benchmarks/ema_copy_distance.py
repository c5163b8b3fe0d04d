"""How close a run's frozen EMA block copies (MAN, MLAAN's LAM) are to the blocks they average.

  python benchmarks/ema_copy_distance.py /work/runs/fm_seeds/dgl_man/seed0 [RUN_DIR ...]

For every saved checkpoint of each run (restored by `jax_local.analysis.run_loading`) and every
EMA pair of its plan (head, copy, source block; docs/methods.md §8.2, §9.1), over the copy's
parameters flattened into one vector θ_copy and the source block's into θ_src:

    distance = ||θ_copy − θ_src|| / ||θ_src||,   cosine = <θ_copy, θ_src> / (||θ_copy|| ||θ_src||)

and, as the scale to read the distance against, how far the source block has moved from its
initial value, ||θ_src − θ_src(0)|| / ||θ_src(0)|| (θ(0) from the run's seed, as training
initialises it). A trainable copy next to the EMA one (MAN's `lb`) is reported too: it is
trained by the head's loss only, so its distance says how far that loss takes it from the block.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from jax_local import ema, experiment  # noqa: E402
from jax_local.analysis import run_loading  # noqa: E402
from jax_local.train_state import init_state  # noqa: E402


def flat(tree) -> np.ndarray:
  return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def distance(a: np.ndarray, ref: np.ndarray) -> float:
  return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
  return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def rows_of(workdir: str) -> list[dict]:
  run = run_loading.load_run(workdir)
  if not run.plan.ema_pairs:
    raise run_loading.RunError(f"{workdir}: its plan has no EMA copies")
  tx = experiment.build(run.config, run.dataset).tx
  init = lambda: init_state(run.plan, tx, jax.random.PRNGKey(run.config.seed),
                            run.dataset.image_shape)
  initial, template = init().params, jax.eval_shape(init)
  steps = sorted(int(n) for n in os.listdir(run_loading.checkpoint_dir(workdir)) if n.isdigit())
  rows = []
  for step in steps:
    params = (run.params if step == run.step  # load_run restored the newest one
              else run_loading.restore_state(workdir, template, step)[0].params)
    for pair in run.plan.ema_pairs:
      head = params["heads"][pair.head]
      src = flat(params["backbone"][pair.source])
      copy = flat(ema.get_path(head, pair.path))
      row = {"run": run.label, "step": step, "head": pair.head, "copy": "/".join(pair.path),
             "source": pair.source, "decay": pair.decay,
             "distance": distance(copy, src), "cosine": cosine(copy, src),
             "source_moved": distance(src, flat(initial["backbone"][pair.source]))}
      if "lb" in head:  # MAN's trainable copy of the same block
        row["lb_distance"] = distance(flat(head["lb"]), src)
      rows.append(row)
  return rows


def main():
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("workdirs", nargs="+")
  args = ap.parse_args()
  print("run | step | head | copy <- source | decay | distance | cosine | source moved from init "
        "| trainable copy (lb) distance")
  for workdir in args.workdirs:
    try:
      rows = rows_of(workdir)
    except run_loading.RunError as e:
      sys.exit(f"error: {e}")
    for r in rows:
      lb = f"{r['lb_distance']:.3f}" if "lb_distance" in r else "-"
      print(f"{r['run']} | {r['step']} | {r['head']} | {r['copy']} <- {r['source']} | "
            f"{r['decay']} | {r['distance']:.3f} | {r['cosine']:.4f} | {r['source_moved']:.3f} "
            f"| {lb}")


if __name__ == "__main__":
  main()
