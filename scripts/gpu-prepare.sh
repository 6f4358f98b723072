#!/bin/sh
# gpu-prepare.sh: run HERE (a Debian machine with apt and a network) before a
# GPU session: downloads the .deb files of the libraries qtune links
# (cJSON, utf8proc, libmicrohttpd, with their headers) into the ignored folder
# .gpu-deps/, which scripts/gpu-check.sh unpacks with `dpkg -x` into a local
# prefix when the GPU machine lacks those headers (it has no network).
# Carry the folder along with the device call: carry [".gpu-deps"].
set -eu
cd "$(dirname "$0")/.."
mkdir -p .gpu-deps
cd .gpu-deps
pkgs="libcjson-dev libcjson1 libutf8proc-dev libutf8proc2 libmicrohttpd-dev libmicrohttpd12"
missing=""
for p in $pkgs; do
  ls "${p}"_*.deb >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  apt-get download $missing
fi
ls -la ./*.deb
echo "ready: .gpu-deps/ ($(du -sh . | cut -f1)); run scripts/gpu-check.sh on the GPU machine with .gpu-deps carried along"
