"""Analysis tools: linear CKA against numpy, the linear probe, restoring runs, compare, plots.

Two tiny runs are trained once per session on real Fashion-MNIST (ResNet-8, `uniform_k3`, 512
training images, evaluated on 2,000 test images): a finished DGL run (1 epoch, 64 of its
training images held out as a validation split) and a BP run of 2 epochs stopped by SIGTERM
after its first evaluation, as a preempted run is (history for epoch 1, a checkpoint, no
summary.json).
"""
import csv
import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from jax_local import compare, plots
from jax_local.analysis import cka, probe, run_loading

# ----------------------------------------------------------------------------- CKA


def hsic_cka(x, y):
  """Independent reference: HSIC with explicit centring matrices (Gretton et al. 2005)."""
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  y = np.asarray(y, np.float64).reshape(len(y), -1)
  n = len(x)
  h = np.eye(n) - np.ones((n, n)) / n
  k, l = x @ x.T, y @ y.T
  hsic = lambda a, b: np.trace(a @ h @ b @ h) / (n - 1) ** 2
  return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def _data(seed=0, n=60, p=12, q=20):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, p)) + rng.normal(size=(1, p))   # non-zero means: centring matters
  y = np.tanh(x @ rng.normal(size=(p, q))) + 0.5 * rng.normal(size=(n, q))
  return x, y


@pytest.mark.parametrize("shape", [(60, 12, 20), (30, 8, 200)])  # p, q < n and q > n (Gram path)
def test_cka_agrees_with_hsic_reference(shape):
  x, y = _data(1, *shape)
  ref = hsic_cka(x, y)
  assert 0.05 < ref < 0.99  # a non-trivial value
  np.testing.assert_allclose(cka.linear_cka_features(x, y), ref, rtol=1e-10)
  np.testing.assert_allclose(cka.cka_from_grams(cka.centred_gram(x), cka.centred_gram(y)), ref,
                             rtol=1e-10)
  np.testing.assert_allclose(cka.linear_cka(x, y), ref, rtol=1e-10)
  np.testing.assert_allclose(  # the float32 Gram used on flattened feature maps
      cka.cka_from_grams(cka.centred_gram(x, np.float32), cka.centred_gram(y, np.float32)), ref,
      rtol=1e-5)


def test_cka_identity_orthogonal_and_scale_invariance():
  x, y = _data(2)
  rng = np.random.default_rng(3)
  q, _ = np.linalg.qr(rng.normal(size=(x.shape[1], x.shape[1])))
  base = cka.linear_cka(x, y)
  assert cka.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
  assert cka.linear_cka(x.reshape(60, 3, 4), x) == pytest.approx(1.0, abs=1e-12)  # flattened
  assert cka.linear_cka(x @ q, y) == pytest.approx(base, rel=1e-10)
  assert cka.linear_cka(7.3 * x, 0.01 * y) == pytest.approx(base, rel=1e-10)
  assert cka.linear_cka(x + 5.0, y) == pytest.approx(base, rel=1e-10)  # centred per feature
  # ... but not invariant to anisotropic scaling, so the checks above can fail
  d = np.diag(np.linspace(0.1, 10.0, x.shape[1]))
  assert abs(cka.linear_cka(x @ d, y) - base) > 1e-3
  # independent noise of many examples is nearly orthogonal
  a, b = rng.normal(size=(2000, 5)), rng.normal(size=(2000, 5))
  assert 0.0 <= cka.linear_cka(a, b) < 0.05


# ----------------------------------------------------------------------------- probe (synthetic)


def test_probe_fits_separable_data_and_not_noise():
  rng = np.random.default_rng(0)
  centres = 3.0 * rng.normal(size=(4, 10))
  y, yt = rng.integers(0, 4, 800), rng.integers(0, 4, 400)
  x, xt = centres[y] + rng.normal(size=(800, 10)), centres[yt] + rng.normal(size=(400, 10))
  res, curve = probe.fit_probe(x, y, xt, yt, 4, return_curve=True)
  assert res.test_accuracy > 0.95 and res.dim == 10
  assert curve[0] == pytest.approx(np.log(4), rel=1e-5)  # zero init: uniform prediction
  assert curve[-1] < 0.2 and abs(curve[-1] - curve[-20]) < 1e-4  # converged
  noise = probe.fit_probe(rng.normal(size=(800, 10)), y, rng.normal(size=(400, 10)), yt, 4)
  assert noise.test_accuracy < 0.4  # chance is 0.25


# ----------------------------------------------------------------------------- tiny trained runs


def _tiny_config(method, epochs):
  from configs import fashion_mnist_quickstart
  c = fashion_mnist_quickstart.get_config(method)
  c.data.train_subset = 512
  c.data.test_subset = 2000   # evaluations and probes on the first 2,000 test images
  c.data.batch_size = 64
  c.num_epochs = epochs
  c.log_every_steps = 4
  return c


@pytest.fixture(scope="session")
def tiny_runs(fashion_mnist, tmp_path_factory):
  """{"dgl": finished 1-epoch run, "bp": 2-epoch run stopped after epoch 1}, data dir."""
  from jax_local import preemption, train
  root = tmp_path_factory.mktemp("runs")
  dgl = str(root / "dgl")
  config = _tiny_config("dgl", 1)
  config.data.validation_size = 64
  train.train_and_evaluate(config, dgl)

  bp = str(root / "bp")
  history = os.path.join(bp, "history.json")
  done = threading.Event()

  def stop_after_first_evaluation():
    while not done.is_set():
      if os.path.exists(history):
        os.kill(os.getpid(), signal.SIGTERM)  # turned into a checkpoint + Preempted
        return
      time.sleep(0.005)

  watcher = threading.Thread(target=stop_after_first_evaluation, daemon=True)
  watcher.start()
  try:
    with pytest.raises(preemption.Preempted):
      train.train_and_evaluate(_tiny_config("bp", 2), bp)
  finally:
    done.set()
    watcher.join()
  return {"dgl": dgl, "bp": bp}


def _read_json(path):
  with open(path) as f:
    return json.load(f)


def _read_csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_runs_as_written_by_the_trainer(tiny_runs):
  assert os.path.exists(os.path.join(tiny_runs["dgl"], "summary.json"))
  # the quickstart config evaluates with both kinds of BN statistics (448 images = 7 batches)
  history = _read_json(os.path.join(tiny_runs["dgl"], "history.json"))
  summary = _read_json(os.path.join(tiny_runs["dgl"], "summary.json"))
  assert history[-1]["bn_reestimate_batches"] == 7 and history[-1]["bn_reestimate_seconds"] > 0
  # the layer-wise curve: every local head's test accuracy, zero-padded module names
  assert sorted(history[-1]["local_test_accuracy"]) == ["m00", "m01"]
  assert all(0 <= a <= 1 for a in history[-1]["local_test_accuracy"].values())
  # the validation split selects the best checkpoint, kept apart from the rolling ones
  assert history[-1]["validation_examples"] == 64
  assert (summary["validation_size"], summary["best_validation_step"]) == (64, history[-1]["step"])
  assert summary["test_error_at_best_validation"] == round(history[-1]["test_error"], 2)
  assert os.listdir(os.path.join(tiny_runs["dgl"], "best_checkpoint")) == [
      str(history[-1]["step"])]
  # metric names shared by every method; TensorBoard hparams as flat fields
  rows = [json.loads(l) for l in open(os.path.join(tiny_runs["dgl"], "metrics.jsonl"))]
  train_row = next(r for r in rows if "train/loss" in r)
  assert {"train/accuracy", "train/weighted_total_loss", "local/m00/loss", "local/m01/accuracy",
          "lr"} <= set(train_row) and not any(k.startswith("final/") for k in train_row)
  eval_row = next(r for r in rows if "eval/test_error" in r)
  assert eval_row["eval/local/m01/test_accuracy"] == history[-1]["local_test_accuracy"]["m01"]
  hparams = _read_json(os.path.join(tiny_runs["dgl"], "hparams.json"))
  assert (hparams["method"], hparams["lr"], hparams["num_modules"]) == ("dgl", 0.1, 3)
  assert summary["final_test_error_bn_reestimated"] == round(
      history[-1]["test_error_bn_reestimated"], 2)  # summary errors: 2 decimals
  assert 0 < summary["final_test_error_bn_reestimated"] < 100
  assert summary["final_test_error"] == round(history[-1]["test_error"], 2)
  assert not os.path.exists(os.path.join(tiny_runs["bp"], "summary.json"))
  assert [h["epoch"] for h in _read_json(os.path.join(tiny_runs["bp"], "history.json"))] == [1]


def test_evaluate_only_reproduces_the_history_of_a_run(tiny_runs, capsys):
  from jax_local import evaluate
  history = _read_json(os.path.join(tiny_runs["dgl"], "history.json"))
  assert evaluate.main([f"--workdir={tiny_runs['dgl']}",
                        "--json"]) == 0
  result = json.loads(capsys.readouterr().out)
  assert (result["step"], result["epoch"]) == (history[-1]["step"], 1)
  for key in ("test_accuracy", "test_error", "test_loss", "test_accuracy_bn_reestimated",
              "validation_error"):
    assert result[key] == pytest.approx(history[-1][key], abs=1e-6), key
  assert result["local_test_accuracy"] == pytest.approx(history[-1]["local_test_accuracy"],
                                                        abs=1e-6)
  assert result["test_examples"] == history[-1]["test_examples"]
  assert evaluate.main([f"--workdir={tiny_runs['dgl']}",
                        "--best"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert f"step {history[-1]['step']} " in lines[0] and len(lines) == 3
  assert lines[1].startswith("  local head m00: test accuracy ")
  assert evaluate.main([f"--workdir={tiny_runs['bp']}", "--best"]) == 2
  assert "data.validation_size > 0" in capsys.readouterr().err
  assert evaluate.main([f"--workdir={tiny_runs['dgl']}", "--step=3"]) == 2
  assert f"no checkpoint of step 3 in {tiny_runs['dgl']}/checkpoints; saved steps: " \
      f"{history[-1]['step']}" in capsys.readouterr().err


@pytest.fixture(scope="session")
def loaded(tiny_runs):
  """The two tiny runs restored (run_loading.LoadedRun), shared by the tests."""
  return {k: run_loading.load_run(tiny_runs[k]) for k in ("dgl", "bp")}


def test_probe_on_trained_runs(tiny_runs, loaded, tmp_path):
  from jax_local import analyze
  dgl, bp = loaded["dgl"], loaded["bp"]
  assert dgl.num_modules == 3 and dgl.feature_blocks == ("s1b0", "s2b0", "s3b0")
  assert bp.plan.num_modules == 1 and bp.feature_blocks == dgl.feature_blocks  # cut at its split
  rows = analyze.probe_runs([dgl, bp], train_examples=512, test_examples=0, log=lambda _: None)
  assert [(r["run"], r["module"]) for r in rows] == [
      ("dgl (dgl)", 1), ("dgl (dgl)", 2), ("dgl (dgl)", 3), ("bp (bp)", 1), ("bp (bp)", 2),
      ("bp (bp)", 3)]
  assert [r["dim"] for r in rows[:3]] == [16, 32, 64]  # pooled channels of the three stages
  for r in rows:
    assert 0.0 <= r["probe_test_accuracy"] <= 1.0 and 0.0 <= r["probe_train_accuracy"] <= 1.0
    assert r["test_examples"] == 2000  # the run's own training set: 64 of DGL's are validation
    assert r["train_examples"] == (448 if r["run"].startswith("dgl") else 512)
    # the restored network, run by the analysis forward, scores what the trainer measured
    history = _read_json(os.path.join(r["workdir"], "history.json"))
    assert r["network_test_accuracy"] == pytest.approx(history[-1]["test_accuracy"], abs=1e-4)
  assert rows[2]["probe_test_accuracy"] > 0.1 + 0.3  # 10 classes: chance is 0.1

  png, csv_path = analyze.plot_probe(rows, [dgl, bp], str(tmp_path / "probe.png"))
  assert _is_png(png) and csv_path == str(tmp_path / "probe.csv")
  table = _read_csv(csv_path)
  assert [t["series"] for t in table] == [r["run"] for r in rows]
  assert [float(t["linear-probe test accuracy (%)"]) for t in table] == pytest.approx(
      [100 * r["probe_test_accuracy"] for r in rows])


def test_cka_on_trained_runs(loaded):
  from jax_local import analyze
  dgl, bp = loaded["dgl"], loaded["bp"]
  rows = analyze.cka_runs([dgl, bp], bp, examples=128, features="pooled", log=lambda _: None)
  x, _ = run_loading.test_images(bp, 128)
  fd, _ = run_loading.module_features(dgl, x)
  fb, _ = run_loading.module_features(bp, x)
  for r, a, b in zip(rows[:3], fd, fb):
    assert r["cka"] == pytest.approx(hsic_cka(a, b), rel=1e-5)
    assert 0.0 < r["cka"] < 1.0 - 1e-4  # two different networks
  assert [r["cka"] for r in rows[3:]] == pytest.approx([1.0] * 3, abs=1e-6)  # bp vs itself


def test_cli_probe_cka_and_missing_pieces(tiny_runs, tmp_path, capsys):
  from jax_local import analyze
  # without --out the figure goes into the first run's workdir, as a PDF, never into the cwd
  rc = analyze.main(["cka", f"--workdir={tiny_runs['dgl']}", f"--workdir={tiny_runs['bp']}",
                     f"--reference={tiny_runs['bp']}", "--examples=250"])
  assert rc == 0, capsys.readouterr().err
  out = os.path.join(tiny_runs["dgl"], "analysis", "cka.pdf")
  with open(out, "rb") as f:
    assert f.read(5) == b"%PDF-"
  rows = _read_csv(out.replace(".pdf", ".csv"))
  assert [r["x_name"] for r in rows] == ["s1b0", "s2b0", "s3b0"] * 2
  cka_col = "linear CKA to bp (bp) [0-1]"
  assert [float(r[cka_col]) for r in rows[3:]] == pytest.approx([1.0] * 3, abs=1e-6)
  assert all(0.0 < float(r[cka_col]) < 1.0 - 1e-4 for r in rows[:3])  # flattened feature maps

  out = str(tmp_path / "probe.png")
  rc = analyze.main(["probe", f"--workdir={tiny_runs['dgl']}", f"--out={out}", "--dpi=50",
                     "--train_examples=512", "--test_examples=500"])
  assert rc == 0 and _is_png(out)
  with open(out, "rb") as f:  # one paper column (3.4 in) at 50 dpi
    assert int.from_bytes(f.read(24)[16:20], "big") == int(plots.COLUMN_WIDTH * 50)
  assert "probe_test_accuracy" in capsys.readouterr().out
  assert len(_read_csv(out.replace(".png", ".csv"))) == 3

  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(run_loading.RunError, match="no config.json"):
    run_loading.load_run(str(empty))
  no_ckpt = tmp_path / "no_ckpt"
  no_ckpt.mkdir()
  (no_ckpt / "config.json").write_text(
      open(os.path.join(tiny_runs["dgl"], "config.json")).read())
  with pytest.raises(run_loading.RunError, match="no checkpoint"):
    run_loading.load_run(str(no_ckpt))
  assert analyze.main(["cka", f"--workdir={no_ckpt}", f"--reference={tiny_runs['bp']}"]) == 2
  assert "no checkpoint in" in capsys.readouterr().err


# ----------------------------------------------------------------------------- compare


def test_compare_reads_finished_and_interrupted_runs(tiny_runs, tmp_path, capsys):
  done, stopped = compare.read_run(tiny_runs["dgl"]), compare.read_run(tiny_runs["bp"])
  h_done = _read_json(os.path.join(tiny_runs["dgl"], "history.json"))
  h_stop = _read_json(os.path.join(tiny_runs["bp"], "history.json"))
  assert (done["status"], done["epochs"], done["method"]) == ("finished", "1/1", "dgl")
  assert (stopped["status"], stopped["epochs"], stopped["method"]) == ("unfinished", "1/2", "bp")
  assert done["split"] == "uniform_k3, 3 modules" and stopped["split"] == "uniform_k3, 1 module"
  assert done["net"] == "cifar_resnet8"
  assert done["final_test_error"] == h_done[-1]["test_error"]
  assert stopped["best_test_error"] == h_stop[0]["test_error"]
  summary = _read_json(os.path.join(tiny_runs["dgl"], "summary.json"))
  assert done["best_test_error"] == pytest.approx(summary["best_test_error"], abs=0.005)
  assert done["test_error_at_best_validation"] == pytest.approx(
      summary["test_error_at_best_validation"], abs=0.005)
  assert stopped["test_error_at_best_validation"] is None
  assert done["step_time_s"] > 0 and stopped["step_time_s"] > 0
  # the trainer logs its memory peak (CPU: the process's RSS high-water mark, bytes)
  rss = [json.loads(l)["peak_rss_bytes"] for l in open(os.path.join(tiny_runs["dgl"],
                                                                    "metrics.jsonl"))
         if "peak_rss_bytes" in l]
  assert rss and done["peak_memory_mib"] == pytest.approx(max(rss) / 2**20)
  assert 50 < done["peak_memory_mib"] < 24 * 2**10   # a Python + JAX process, under 24 GiB

  png = str(tmp_path / "curves.png")
  assert compare.main([tiny_runs["dgl"], tiny_runs["bp"], "--format=markdown",
                       f"--plot={png}"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[0].startswith("| run | method |") and len(out) == 4
  assert out[2].startswith("| dgl | dgl | fashion_mnist | cifar_resnet8 |") and "| 1/2 |" in out[3]
  assert _is_png(png)
  curve = _read_csv(str(tmp_path / "curves.csv"))
  assert [r["series"] for r in curve] == ["dgl (dgl)", "bp (bp)"]
  assert [float(r["test accuracy (%)"]) for r in curve] == pytest.approx(
      [100 * h_done[0]["test_accuracy"], 100 * h_stop[0]["test_accuracy"]])

  pdf = str(tmp_path / "curves.pdf")  # the figure's format follows the extension
  assert compare.main([tiny_runs["dgl"], "--format=csv", f"--plot={pdf}"]) == 0
  with open(pdf, "rb") as f:
    assert f.read(5) == b"%PDF-" and os.path.getsize(pdf) > 1000
  rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
  assert rows[0]["run"] == "dgl" and float(rows[0]["best_test_error"]) == done["best_test_error"]
  with pytest.raises(SystemExit) as exit_:
    compare.main([tiny_runs["dgl"], "--plot=curves.jpg"])
  assert exit_.value.code == 2 and "one of .png, .pdf, .svg" in capsys.readouterr().err
  assert compare.main([str(tmp_path / "missing")]) == 2
  assert "no such run directory" in capsys.readouterr().err


def test_compare_reads_a_run_being_written(tmp_path):
  """A run that has only started: config.json and a few metrics, a torn last line, no history."""
  run = tmp_path / "starting"
  run.mkdir()
  config = _tiny_config("dgl", 2)
  (run / "config.json").write_text(config.to_json())
  (run / "metrics.jsonl").write_text(
      json.dumps({"step": 4, "loss": 2.0, "images_per_sec": 128.0}) + "\n"
      + json.dumps({"step": 8, "loss": 1.9, "images_per_sec": 64.0}) + "\n{\"step\": 1")
  row = compare.read_run(str(run))
  assert (row["epochs"], row["best_test_error"], row["last_step"]) == ("0/2", None, 8)
  assert row["step_time_s"] == pytest.approx(np.median([64 / 128.0, 64 / 64.0]))
  assert "n/a" in compare.format_table([row])



def test_compare_prints_the_papers_error_beside_a_published_row(tmp_path):
  """A run of configs/published.py:<row> shows the row's published error; others show n/a."""
  from configs import published as published_configs
  run = tmp_path / "r32_dgl_hpff"
  run.mkdir()
  (run / "config.json").write_text(
      published_configs.get_config("cifar10_r32_k16_dgl_hpff").to_json())
  (run / "history.json").write_text(json.dumps(
      [{"epoch": 1, "step": 10, "test_error": 9.5, "test_accuracy": 0.905}]))
  row = compare.read_run(str(run))
  assert (row["paper_error"], row["published_row"]) == ("8.94", "cifar10_r32_k16_dgl_hpff")
  other = tmp_path / "fm"
  other.mkdir()
  (other / "config.json").write_text(_tiny_config("dgl", 1).to_json())
  table = compare.format_table([row, compare.read_run(str(other))], "markdown")
  assert "paper err %" in table.splitlines()[0] and "| 8.94 |" in table

def _synthetic_run(root, name, method, seed, errors, errors_bn=None, finished=True):
  """A run folder as the trainer writes it: config.json, history.json (one entry per epoch),
  summary.json when finished."""
  run = root / name
  run.mkdir()
  config = _tiny_config(method, len(errors))
  config.seed = seed
  (run / "config.json").write_text(config.to_json())
  history = [{"epoch": e + 1, "step": 10 * (e + 1), "test_error": err,
              "test_accuracy": 1 - err / 100} for e, err in enumerate(errors)]
  for h, err in zip(history, errors_bn or []):
    h["test_error_bn_reestimated"] = err
  (run / "history.json").write_text(json.dumps(history))
  if finished:
    (run / "summary.json").write_text(json.dumps({"num_modules": 3}))
  return str(run)


def test_compare_groups_seeds_into_mean_and_std(tmp_path, capsys):
  runs = [_synthetic_run(tmp_path, f"dgl_s{s}", "dgl", s, [30.0, e], [28.0, b], finished=s < 2)
          for s, e, b in ((0, 20.0, 18.0), (1, 22.0, 19.0), (2, 27.0, 23.0))]
  runs.append(_synthetic_run(tmp_path, "bp_s0", "bp", 0, [25.0, 15.0]))
  rows = compare.group_seeds([compare.read_run(r) for r in runs])
  assert [r["run"] for r in rows] == ["dgl_s0 (3 seeds)", "bp_s0"]
  dgl = rows[0]
  finals = [20.0, 22.0, 27.0]
  assert dgl["final_test_error"]["mean"] == pytest.approx(np.mean(finals))
  assert dgl["final_test_error"]["std"] == pytest.approx(np.std(finals, ddof=1))
  assert (dgl["final_test_error"]["min"], dgl["final_test_error"]["max"]) == (20.0, 27.0)
  assert dgl["final_test_error_bn"]["mean"] == pytest.approx(20.0)
  assert dgl["best_test_error"]["n"] == 3 and dgl["status"] == "2/3 finished"
  assert dgl["seeds"] == [0, 1, 2]
  assert dgl["curve"] == [(1, pytest.approx(70.0)), (2, pytest.approx(100 - np.mean(finals)))]
  assert dgl["curve_std"] == [0.0, pytest.approx(np.std(finals, ddof=1))]

  png = str(tmp_path / "out" / "seeds.png")
  assert compare.main(runs + ["--format=markdown", f"--plot={png}"]) == 0
  out = capsys.readouterr().out.splitlines()
  assert "re-est. BN" in out[0] and len(out) == 4
  assert f"{np.mean(finals):.2f} ± {np.std(finals, ddof=1):.2f} (20.00–27.00)" in out[2]
  curve = _read_csv(str(tmp_path / "out" / "seeds.csv"))
  assert float(curve[1]["test accuracy (%) std"]) == pytest.approx(np.std(finals, ddof=1))
  assert compare.main(runs + ["--no-group_seeds", "--format=csv", "--plot="]) == 0
  table = list(csv.DictReader(capsys.readouterr().out.splitlines()))
  assert [r["run"] for r in table] == ["dgl_s0", "dgl_s1", "dgl_s2", "bp_s0"]
  assert float(table[2]["final_test_error"]) == 27.0 and table[2]["final_test_error_n"] == "1"


def test_compare_names_a_seed_group_of_the_seed_driver_by_its_folder(tmp_path):
  """`jax_local.seeds` writes <root>/seed<s>: the group is named after root, not after seed0."""
  (tmp_path / "qs_dgl").mkdir()
  runs = [_synthetic_run(tmp_path / "qs_dgl", f"seed{s}", "dgl", s, [30.0, 20.0 + s])
          for s in range(3)]
  rows = compare.group_seeds([compare.read_run(r) for r in runs])
  assert [r["run"] for r in rows] == ["qs_dgl (3 seeds)"]


def test_compare_names_seed_groups_in_same_named_folders_by_their_parent(tmp_path):
  """Two sweeps' `bp` seed folders (6 and 12 epochs) would both be "bp": the parent tells."""
  runs = []
  for sweep, epochs in (("short", 2), ("long", 4)):
    (tmp_path / sweep / "bp").mkdir(parents=True)
    runs += [_synthetic_run(tmp_path / sweep / "bp", f"seed{s}", "bp", s, [30.0] * epochs)
             for s in range(2)]
  rows = compare.group_seeds([compare.read_run(r) for r in runs])
  assert [r["run"] for r in rows] == ["short/bp (2 seeds)", "long/bp (2 seeds)"]


# ----------------------------------------------------------------------------- plots


def test_line_plot_with_many_series_puts_its_legend_below_the_axes(tmp_path):
  """Past LEGEND_INSIDE_MAX series the legend goes below the axes and the figure grows by one
  LEGEND_ROW per series, so the legend does not cover the lines."""
  def height(n):
    path = str(tmp_path / f"lines{n}.png")
    plots.line_plot(path, [plots.Series(f"s{i}", [1, 2], [i, i + 1]) for i in range(n)],
                    "x", "y", "t", dpi=50)
    with open(path, "rb") as f:
      return int.from_bytes(f.read(24)[20:24], "big")
  few, many = plots.LEGEND_INSIDE_MAX, 2 * plots.LEGEND_INSIDE_MAX + 1
  assert height(few) == int(0.7 * plots.COLUMN_WIDTH * 50)
  assert height(many) == int((0.7 * plots.COLUMN_WIDTH + many * plots.LEGEND_ROW) * 50)


def _is_png(path):
  with open(path, "rb") as f:
    return f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(path) > 1000


def test_memory_chart_writes_png_and_csv_in_mib(tmp_path):
  mib = 2.0 ** 20
  table = {"dgl": {"bp": 100 * mib, "fused": 50 * mib, "sequential": 20 * mib},
           "infopro": {"bp": 100 * mib, "bp_remat": 110 * mib, "sequential": 30 * mib}}
  png, path = plots.memory_chart(str(tmp_path / "mem.png"), table, "test")
  assert _is_png(png)
  rows = _read_csv(path)
  assert list(rows[0]) == ["group", "bp", "bp_remat", "fused", "sequential"]
  assert [r["group"] for r in rows] == ["dgl", "infopro"]
  assert float(rows[0]["sequential"]) == 20.0 and rows[0]["bp_remat"] == ""
  assert float(rows[1]["bp_remat"]) == 110.0
  # the format follows the extension; a PNG's pixel width follows dpi
  pdf, _ = plots.memory_chart(str(tmp_path / "mem.pdf"), table, "test")
  with open(pdf, "rb") as f:
    assert f.read(5) == b"%PDF-"
  low, _ = plots.memory_chart(str(tmp_path / "mem72.png"), table, "test", dpi=72)
  width = lambda p: int.from_bytes(open(p, "rb").read()[16:20], "big")   # PNG IHDR width
  assert width(png) == pytest.approx(width(low) * plots.DPI / 72, rel=0.02)
