#!/usr/bin/env bash
# Installs what tessel needs to build on Debian 12 (bookworm); a no-op when all is present.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
set -euo pipefail

packages=(
  libmlir-22-dev mlir-22-tools llvm-22-dev llvm-22-tools clang-22 lld-22 libclang-rt-22-dev
  libabsl-dev libflatbuffers-dev flatbuffers-compiler nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev ninja-build ccache cmake python3
  libpcre2-dev libutf8proc-dev libsentencepiece-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "tessel setup: installing ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ -x /usr/local/cuda/bin/nvcc ]] || command -v nvcc >/dev/null 2>&1; then
  echo "tessel setup: CUDA toolkit found ($(nvcc --version 2>/dev/null | tail -1 || echo /usr/local/cuda))"
else
  echo "tessel setup: no CUDA toolkit found; the CPU-only runtime will be built"
fi
