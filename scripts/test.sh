#!/usr/bin/env bash
# Set up everything the tests need and run them all (what CI runs).
# Extra arguments go to pytest.
#
#   scripts/test.sh --fast [PYTEST ARGS]
#
# is the inner loop: set-up only when .venv lacks what the tests import (a
# venv made by scripts/demo.sh has no pytest; a checkout whose packaging
# changed needs its editable install redone), and none of the tests that
# need a real pool, an X desktop, the PyInstaller bundle, Brian, a SLURM cluster, or seconds of
# waiting (the markers in pyproject.toml); a few minutes on a quiet 2-core PC.
set -euo pipefail
cd "$(dirname "$0")/.."
FAST_TIERS="not (pool or desktop or bundle or brian or slow or slurm)"
if [ "${1:-}" = "--fast" ]; then
    shift
    if ! .venv/bin/python -c 'import pytest, pytest_timeout, pytestqt, pandas, brian2, trayapp, sparecycles_ui' \
            2>/dev/null; then
        [ -x .venv/bin/python ] || bash scripts/system-packages.sh
        bash scripts/venv.sh brian,test,bundle
    fi
    exec .venv/bin/python -m pytest -m "$FAST_TIERS" "$@"
fi
bash scripts/system-packages.sh
bash scripts/venv.sh brian,test,bundle
exec .venv/bin/python -m pytest "$@"
