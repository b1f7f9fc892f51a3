#!/usr/bin/env bash
# Debian packages SpareCycles' setup and tests need. Installs only what is
# missing; uses sudo when not root. Safe to run again.
set -euo pipefail

# python3-venv: Debian ships venv's pip bootstrap separately.
# openssh-server: the pool tests start their own sshd on 127.0.0.1.
packages=(python3 python3-venv coreutils util-linux openssh-server)
# bubblewrap, openssh-sftp-server: a master's restricted key (slave authorize)
# gets its file transfers from sftp-server confined by bwrap to the spool.
packages+=(bubblewrap openssh-sftp-server)
# The tray app's tests: Xvfb (a real X display), trayer (a tray host, so the
# icon is really embedded), xdotool/x11-utils (real clicks; find the popup
# menu), and the X/GL/font libraries PyQt6's xcb platform plugin loads.
packages+=(xvfb trayer xdotool x11-utils libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1
           libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xinerama0 libxcb-xkb1 libxcb-cursor0
           libegl1 libgl1 libfontconfig1 libdbus-1-3)
# openbox: a window manager on the Xvfb display, so the window tests see real
# frames, focus and placement (dialogs over their window) as a user's desktop has.
packages+=(openbox)
# Xvfb and xdotool: the idle tests run a real X display and type on it;
# dbus-daemon: a private session bus for the Wayland (D-Bus) idle source.
# gcc, python3-dev, linux-libc-dev: pynput needs evdev on Linux, which PyPI
# ships as source only and compiles against <linux/input.h>.
packages+=(xvfb xdotool dbus-daemon gcc python3-dev linux-libc-dev)
# desktop-file-utils: desktop-file-validate checks the autostart entry and the
# bundle's menu entry. binutils: PyInstaller reads and patches ELF files with
# objdump/objcopy. tar, gzip: the bundle's tarball. xvfb, trayer, x11-utils:
# the build script times the bundled tray app's start to its icon in a tray.
packages+=(desktop-file-utils binutils tar gzip xvfb trayer x11-utils)
# bubblewrap: every task runs in a bwrap sandbox (user namespaces); the
# sandbox tests try their attacks from inside one.
packages+=(bubblewrap)
# slurm-wlm, munge: the SLURM tests start a one-node cluster of their own
# (munged, slurmctld, slurmd with a config in a temp folder); the clients
# (sbatch, squeue, scancel) are what a cluster's login node offers.
packages+=(slurm-wlm munge)
# parallel, rsync: bench/ssh_overhead.py compares SpareCycles with GNU parallel
# (--sshlogin, --transferfile and --return, which use rsync) on the same sshd.
packages+=(parallel rsync)

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
