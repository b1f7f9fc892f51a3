#!/usr/bin/env bash
# Create (or update) .venv with SpareCycles installed from this checkout.
# Usage: scripts/venv.sh EXTRAS   e.g. scripts/venv.sh brian,test
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-brian}"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
