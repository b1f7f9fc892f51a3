#!/usr/bin/env bash
# Refresh the README's pictures in docs/screenshots/: run the tests that take
# them with SPARECYCLES_SCREENSHOTS_DIR pointing there. (A plain test run
# saves them in a temporary folder and names it at the end: tests never write
# into the repository on their own.) Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
SPARECYCLES_SCREENSHOTS_DIR="$PWD/docs/screenshots" exec .venv/bin/python -m pytest \
    tests/test_ui_desktop.py tests/test_ui_views_desktop.py tests/test_ui_models.py::test_pool_chart_paints_busy_slots \
    tests/test_ui_resultsplot.py "$@"
