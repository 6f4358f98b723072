#!/bin/sh
# Installs what qtune needs to build and test (Debian packages), only what is
# missing, then builds. Safe to run repeatedly.
#   build:   gcc make libcjson-dev libutf8proc-dev libmicrohttpd-dev libyaml-dev
#   tests:   gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user (arm64 kernels under emulation,
#            x86 CPUs without AVX2), libsimde-dev (the AVX-512 kernels on portable intrinsics),
#            libopenmpi-dev openmpi-bin (data-parallel training under mpirun; the build uses MPI when present),
#            nodejs npm unless npm is there (the server test drives qtune serve with the official openai npm client),
#            clang (tests/cli-serve-abuse.sh abuses a clang ASan+UBSan build with float-cast-overflow)
set -e
cd "$(dirname "$0")/.."
need=""
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
pkgs="gcc make libcjson-dev libutf8proc-dev libmicrohttpd-dev libyaml-dev"
[ "${1:-}" = "--test" ] && pkgs="$pkgs gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user libsimde-dev libopenmpi-dev openmpi-bin clang"
[ "${1:-}" = "--test" ] && ! command -v npm >/dev/null && pkgs="$pkgs nodejs npm"
for p in $pkgs; do have "$p" || need="$need $p"; done
if [ -n "$need" ]; then
  echo "installing:$need"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
fi
make -j"$(nproc)" >/dev/null
