#!/usr/bin/env bash
# Debian packages SpareCycles' setup and tests need. Installs only what is
# missing; uses sudo when not root. Safe to run again.
set -euo pipefail

# python3-venv: Debian ships venv's pip bootstrap separately.
# openssh-server: the pool tests start their own sshd on 127.0.0.1.
packages=(python3 python3-venv coreutils util-linux openssh-server)

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# A Python that is not Debian's (pyenv, conda) brings its own venv.
if [[ " ${missing[*]} " == *" python3-venv "* ]] && python3 -c "import ensurepip" 2>/dev/null; then
    missing=("${missing[@]/python3-venv}")
fi
missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
