#!/usr/bin/env bash
# Put SpareCycles in this user's application menu: a .desktop entry whose Exec
# is this bundle's executable (absolute path), and the icon in the hicolor
# theme. Run it again after moving the bundle. --uninstall removes both.
# Shipped inside the bundle by installer/build.sh; needs only bash and coreutils.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
apps="$data/applications"
icons="$data/icons/hicolor/scalable/apps"

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$apps/sparecycles.desktop" "$icons/sparecycles.svg"
    echo "removed SpareCycles from the application menu"
    exit 0
fi

# Exec quoting (Desktop Entry spec): double quotes, with " ` $ \ escaped inside
# them, % doubled; then every backslash doubled once more for the string level.
quoted="$(printf '%s' "$here/sparecycles" | sed -e 's/[\\"`$]/\\&/g' -e 's/%/%%/g' -e 's/\\/\\\\/g')"
template="$(cat "$here/share/applications/sparecycles.desktop.in")"
mkdir -p "$apps" "$icons"
cp "$here/share/icons/sparecycles.svg" "$icons/sparecycles.svg"
printf '%s\n' "${template//@EXEC@/\"$quoted\"}" > "$apps/sparecycles.desktop.partial"
mv "$apps/sparecycles.desktop.partial" "$apps/sparecycles.desktop"
command -v update-desktop-database >/dev/null && update-desktop-database "$apps" 2>/dev/null || true
echo "installed $apps/sparecycles.desktop and $icons/sparecycles.svg"
