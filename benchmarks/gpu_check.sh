#!/usr/bin/env bash
# The device check: memory, step time, roofline and dispatch of jax_local on one accelerator,
# in at most BUDGET_S seconds (default 450, under 8 minutes), everything written to one folder.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR] [--smoke]
#
# OUT_DIR defaults to $OUT, else ./gpu_check_out. --smoke runs the same code on a ResNet-8 at
# batch 8 (CPU, seconds; tests/test_gpu_check.py). Uses the machine's own Python ($PYTHON,
# default python3) and JAX as they are, without TensorFlow; jax_local is imported from this
# checkout (PYTHONPATH), nothing is installed into the machine's environment. Python packages
# that are missing (ml_collections, absl-py, PyYAML) are installed from the wheels in
# benchmarks/wheels/ (py3.12 / manylinux x86_64; benchmarks/wheels/README.md) into a temporary
# folder on PYTHONPATH (no network needed).
#
# Parts, each a process of its own with a deadline (a part stopped or failing keeps the rows it
# wrote, and the next part starts): a memory (45 % of the budget), b speed (30 %), c roofline
# (10 %), d dispatch (15 %); see benchmarks/gpu_check.py. Files: env.txt, log.txt,
# a_memory.{md,json}, b_speed.{md,json}, c_roofline.{md,json}, d_dispatch.{md,json},
# summary.md (every table, in order).
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SMOKE=""
DIR=""
for arg in "$@"; do
  case "$arg" in
    --smoke) SMOKE="--smoke" ;;
    -*) echo "gpu_check.sh: unknown option $arg (usage: gpu_check.sh [OUT_DIR] [--smoke])" >&2
        exit 2 ;;
    *) DIR="$arg" ;;
  esac
done
DIR="${DIR:-${OUT:-gpu_check_out}}"
mkdir -p "$DIR" && DIR="$(cd "$DIR" && pwd)"
PY="${PYTHON:-python3}"
BUDGET_S="${BUDGET_S:-450}"
START=$(date +%s)
END=$((START + BUDGET_S))
LOG="$DIR/log.txt"

SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
missing=$("$PY" - <<'EOF'
import importlib.util
print(" ".join(m for m in ("ml_collections", "absl", "yaml") if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ]; then   # only the missing ones: PYTHONPATH comes before site-packages
  wheels=()
  for m in $missing; do
    case "$m" in
      ml_collections) wheels+=("$ROOT"/benchmarks/wheels/ml_collections-*.whl) ;;
      absl) wheels+=("$ROOT"/benchmarks/wheels/absl_py-*.whl) ;;
      yaml) wheels+=("$ROOT"/benchmarks/wheels/pyyaml-*.whl) ;;
    esac
  done
  echo "missing: $missing; installing ${wheels[*]##*/}" | tee -a "$LOG"
  "$PY" -m pip install -q --no-index --no-deps --target "$SCRATCH/site" "${wheels[@]}" \
      >>"$LOG" 2>&1 || echo "pip install of the carried wheels failed (see above)" | tee -a "$LOG"
  export PYTHONPATH="$PYTHONPATH:$SCRATCH/site"
fi
# Compiled programs are shared between the parts' processes through a persistent cache.
export JAX_COMPILATION_CACHE_DIR="$SCRATCH/xla_cache"
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
# Each process takes GPU memory as it needs it (the memory part starts a second process).
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export TF_CPP_MIN_LOG_LEVEL=3
if [ -n "$SMOKE" ]; then   # fast compiles; smoke numbers are not results
  export JAX_DISABLE_MOST_OPTIMIZATIONS=1
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" \
      status --porcelain 2>/dev/null | grep -q . && echo ' (with uncommitted changes)')"
  echo "command: bash benchmarks/gpu_check.sh $*"
  echo "budget_s: $BUDGET_S"
  "$PY" - <<'EOF' 2>&1
import importlib.metadata as md, platform
print("python:", platform.python_version())
for p in ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "flax", "optax",
          "orbax-checkpoint", "chex", "ml-collections", "tensorboard", "numpy"):
  try:
    print(f"{p}: {md.version(p)}")
  except md.PackageNotFoundError:
    pass
import jax
print("devices:", jax.devices())
print("device_kind:", jax.devices()[0].device_kind)
EOF
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
      --format=csv,noheader
} >"$DIR/env.txt" 2>&1
cat "$DIR/env.txt"

run_part() {  # part, share of the budget that ends it (percent, cumulative)
  local part=$1 until=$((START + BUDGET_S * $2 / 100))
  local now
  now=$(date +%s)
  [ "$until" -gt "$END" ] && until=$END
  if [ "$until" -le $((now + 5)) ]; then
    echo "part $part: no time left" | tee -a "$LOG"
    return
  fi
  echo "== part $part until +$((until - START)) s" | tee -a "$LOG"
  timeout --kill-after=10 $((until - now)) "$PY" "$ROOT/benchmarks/gpu_check.py" \
      --part="$part" --out="$DIR" --deadline="$until" $SMOKE 2>&1 | tee -a "$LOG"
  echo "== part $part exit ${PIPESTATUS[0]} after $(($(date +%s) - now)) s" | tee -a "$LOG"
}

run_part a 45
run_part b 75
run_part c 85
run_part d 100

{
  echo "# jax_local device check"
  echo
  sed 's/^/    /' "$DIR/env.txt"
  for f in a_memory b_speed c_roofline d_dispatch; do
    echo
    echo "## $f"
    echo
    if [ -f "$DIR/$f.md" ]; then cat "$DIR/$f.md"; else echo "(no rows: see log.txt)"; fi
  done
} >"$DIR/summary.md"
echo "wrote $DIR (summary.md) in $(($(date +%s) - START)) s"
