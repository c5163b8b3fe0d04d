#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), then trains the embedded default three times on
# Fashion-MNIST (end-to-end backprop, DGL, DGL+HPFF) and prints one table: test errors with
# running and re-estimated BatchNorm statistics, memory and step time relative to BP.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
runs=()
for method in bp dgl dgl,hpff; do
  workdir="runs/quickstart_${method/,/_}"
  .venv/bin/python launch.py --config="configs/fashion_mnist_quickstart.py:$method" \
    --workdir="$workdir"
  runs+=("$workdir")
done
.venv/bin/python scripts/quickstart_table.py "${runs[@]}"
