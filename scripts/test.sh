#!/usr/bin/env bash
# Set up everything the tests need and run them. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh
bash scripts/venv.sh brian,test
exec .venv/bin/python -m pytest "$@"
