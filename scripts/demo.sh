#!/usr/bin/env bash
# Set up SpareCycles with Brian 2 in .venv and run the bundled demo sweep on this PC.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-packages.sh
bash scripts/venv.sh brian
exec .venv/bin/sparecycles demo "$@"
