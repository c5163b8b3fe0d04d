"""The device check (benchmarks/gpu_check.sh) in its --smoke mode: every part runs on a
ResNet-8 at batch 8 on the CPU and writes its rows; the compile-only analysis and the executed
sequential step count the same programs."""
import json
import os
import subprocess
import sys

from tests.xla_flags import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_smoke(tmp_path):
  out = tmp_path / "out"
  env = {**os.environ, "PYTHON": sys.executable, "BUDGET_S": "300", "JAX_PLATFORMS": "cpu"}
  env["XLA_FLAGS"] = xla_flags()   # one device, as on the GPU machine
  run = subprocess.run(["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh"), str(out),
                        "--smoke"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=400)
  assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
  parts = {}
  for name in ("a_memory", "b_speed", "c_roofline", "d_dispatch"):
    with open(out / f"{name}.json") as f:
      rows = json.load(f)["rows"]
    assert rows and not [r for r in rows if "error" in r or "skipped" in r], (name, rows)
    parts[name] = rows
  memory = {r["config"]: r for r in parts["a_memory"]}
  assert set(memory) == {"cifar10_r32_bp", "cifar10_r32_k16_dgl"}
  for r in memory.values():
    assert r["compile_bytes"] > 0 and r["measured_bytes"] > 0
  assert memory["cifar10_r32_bp"]["calls"] == 1
  speed = parts["b_speed"]
  assert {(r["dtype"], r["variant"]) for r in speed} == {("float32", "bp"),
                                                          ("float32", "sequential")}
  assert all(r["s_per_step"] > 0 for r in speed)
  assert all(r["ratio_to_bp"] == 1.0 for r in speed if r["variant"] == "bp")
  (roof,) = parts["c_roofline"]
  assert roof["flops"] > 1e6 and roof["images_per_s"] > 0 and roof["batch"] == 8
  (dispatch,) = parts["d_dispatch"]
  assert dispatch["calls_per_step"] == memory["cifar10_r32_k16_dgl"]["calls"]
  assert 0 < dispatch["distinct_programs"] <= dispatch["calls_per_step"]
  assert 0 < dispatch["host_launch_s"] < dispatch["s_per_step"]
  with open(out / "summary.md") as f:
    summary = f.read()
  assert all(f"## {n}" in summary for n in parts) and "(no rows" not in summary
  with open(out / "env.txt") as f:
    env_txt = f.read()
  assert "commit: " in env_txt and "device_kind: cpu" in env_txt
