#!/usr/bin/env bash
# Fails if the runtime library links or contains MLIR or LLVM code.
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
set -euo pipefail
lib=$1
needed=$(readelf -d "$lib" | awk '/NEEDED/ {print $NF}')
echo "$lib needs: $(echo $needed | tr -d '[]')"
if echo "$needed" | grep -qiE 'LLVM|MLIR'; then
  echo "FAIL: the runtime links an LLVM/MLIR library"; exit 1
fi
# Statically linked code would show as symbols in those namespaces.
if nm -C "$lib" | grep -qE ' (mlir|llvm)::'; then
  echo "FAIL: the runtime contains mlir:: or llvm:: symbols:"
  nm -C "$lib" | grep -E ' (mlir|llvm)::' | head -5
  exit 1
fi
echo "ok: no MLIR or LLVM in $(basename "$lib")"
