#!/usr/bin/env bash
# Build SpareCycles' one-folder bundle with PyInstaller, a tarball of it, and
# print its figures (size, start times).
#
#   installer/build.sh [--dist DIR] [--work DIR] [--no-measure]
#
# Produces, in DIR (default: dist/ at the top of the checkout):
#   sparecycles/sparecycles            the executable: tray app, CLI and agent in one
#   sparecycles/install-desktop.sh     adds it to the user's application menu (.desktop + icon)
#   sparecycles-VERSION-linux-ARCH.tar.gz
#
# Prerequisites, all checked before building:
#   - a Python >= 3.11 with SpareCycles and its `build` extra installed, i.e.
#     PyInstaller >= 6 and PyQt6 (`pip install -e '.[build]'`); by default the
#     checkout's .venv, else python3 on PATH; PYTHON=/path/to/python overrides;
#   - tar and gzip.
# Optional: desktop-file-validate (Debian: desktop-file-utils) checks the
# .desktop template; Xvfb, trayer and xwininfo (x11-utils) let the figures
# include the tray app's start time to its icon.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dist="$root/dist"
work=""
measure=1
while [ $# -gt 0 ]; do
    case "$1" in
        --dist) dist="$2"; shift 2 ;;
        --work) work="$2"; shift 2 ;;
        --no-measure) measure=0; shift ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

fail() { echo "build.sh: $1" >&2; [ -n "${2:-}" ] && echo "  fix: $2" >&2; exit 1; }

if [ -n "${PYTHON:-}" ]; then python="$PYTHON"
elif [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"
else python="$(command -v python3 || true)"; fi
[ -n "$python" ] && [ -x "$(command -v "$python")" ] || fail "no Python found" "install python3, or set PYTHON"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || fail "$python is older than Python 3.11" "set PYTHON to a Python 3.11 or newer"
"$python" -c 'import PyInstaller, sys; sys.exit(int(PyInstaller.__version__.split(".")[0]) < 6)' 2>/dev/null \
    || fail "PyInstaller >= 6 is not installed for $python" "$python -m pip install -e '$root[build]'"
"$python" -c 'import PyQt6.QtWidgets, trayapp, sparecycles_ui' 2>/dev/null \
    || fail "SpareCycles or PyQt6 does not import in $python" "$python -m pip install -e '$root[build]'"
for tool in tar gzip; do
    command -v "$tool" >/dev/null || fail "$tool is missing" "apt install $tool"
done
if command -v desktop-file-validate >/dev/null; then
    sed 's|@EXEC@|/opt/sparecycles/sparecycles|' "$root/installer/sparecycles.desktop.in" > "${TMPDIR:-/tmp}/sparecycles-check.$$.desktop"
    problems="$(desktop-file-validate "${TMPDIR:-/tmp}/sparecycles-check.$$.desktop" || echo failed)"
    rm -f "${TMPDIR:-/tmp}/sparecycles-check.$$.desktop"
    [ -z "$problems" ] || fail "installer/sparecycles.desktop.in is not a valid desktop entry: $problems"
else
    echo "build.sh: desktop-file-validate not found (desktop-file-utils); the .desktop template is not checked"
fi

version="$("$python" -c 'import trayapp; print(trayapp.__version__)')"
arch="$(uname -m)"
cleanup_work=0
if [ -z "$work" ]; then work="$(mktemp -d "${TMPDIR:-/tmp}/sparecycles-build.XXXXXX")"; cleanup_work=1; fi
mkdir -p "$dist"
dist="$(cd "$dist" && pwd)"

echo "building SpareCycles $version with $python into $dist"
started=$(date +%s.%N)
# QT_QPA_PLATFORM: PyInstaller's Qt hooks start Qt to find its plugins; no display is needed.
QT_QPA_PLATFORM=offscreen "$python" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$dist" --workpath "$work" "$root/installer/sparecycles.spec"
bundle="$dist/sparecycles"
mkdir -p "$bundle/share/applications" "$bundle/share/icons"
cp "$root/installer/sparecycles.desktop.in" "$bundle/share/applications/"
cp "$root/installer/sparecycles.svg" "$bundle/share/icons/"
cp "$root/installer/install-desktop.sh" "$bundle/"
chmod +x "$bundle/install-desktop.sh"

tarball="$dist/sparecycles-$version-linux-$arch.tar.gz"
rm -f "$dist"/sparecycles-*.tar.gz
tar -C "$dist" -czf "$tarball.partial" sparecycles
mv "$tarball.partial" "$tarball"
[ "$cleanup_work" -eq 0 ] || rm -rf "$work"
echo "figure: build time $(awk "BEGIN {printf \"%.0f\", $(date +%s.%N) - $started}") s (bundle and tarball)"
echo "built $bundle/sparecycles and $tarball"

if [ "$measure" -eq 1 ]; then
    "$python" "$root/installer/measure.py" "$bundle"
fi
