#!/usr/bin/env bash
# Install what deltasoup needs to build, test and benchmark on Debian 12.
# Installs only what is missing; needs root (or sudo) when something is.
set -euo pipefail

PKGS_BUILD="build-essential autoconf automake libtool pkg-config libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools libopenblas-dev check libssl-dev libjansson-dev libsodium-dev"
PKGS_TEST="slurm-wlm munge python3 python3-numpy python3-torch python3-h5py clang libclang-rt-14-dev"

missing=()
for p in $PKGS_BUILD $PKGS_TEST; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all packages present"
    exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
