#!/usr/bin/env bash
# Installs everything (scripts/setup.sh) and runs the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# two workers (the tests compile one program at a time); a test module stays on one worker,
# so module-scoped fixtures (trained runs) are built once
.venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
