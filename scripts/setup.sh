#!/usr/bin/env bash
# Installs the Debian packages the project builds and runs with; a no-op when they are present.
set -euo pipefail
# One package a line (the test of the start-up check runs `acon` on an emulated older CPU:
# qemu-user; the ONNX tests' venv: python3-venv; data-parallel training:
# Open MPI).
packages=(
  libdnnl-dev
  zlib1g-dev
  libpng-dev
  libjpeg-dev
  dataset-fashion-mnist
  python3-venv
  qemu-user
  libopenmpi-dev
  openmpi-bin
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# onnx + onnxruntime for the ONNX export tests, in .venv-onnx/ (never PyTorch).
"$(dirname "$0")/onnx/setup_venv.sh"
