#!/usr/bin/env bash
# Installs everything (scripts/setup.sh), then trains the embedded default twice on
# Fashion-MNIST, end-to-end backprop and DGL, and prints both test errors.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TF_CPP_MIN_LOG_LEVEL=3
for method in bp dgl; do
  .venv/bin/python launch.py --config="configs/fashion_mnist_quickstart.py:$method" \
    --workdir="runs/quickstart_$method"
done
