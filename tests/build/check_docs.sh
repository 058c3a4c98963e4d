#!/usr/bin/env bash
# Fails if the committed dialect docs differ from what the .td files generate.
# Regenerate with: scripts/update-docs.sh
# SPDX-License-Identifier: Apache-2.0 WITH LLVM-exception
set -euo pipefail
committed=$1 generated=$2
status=0
for f in "$generated"/*.md; do
  name=$(basename "$f")
  if ! diff -q "$f" "$committed/$name" >/dev/null 2>&1; then
    echo "docs/dialect/$name is stale: run scripts/update-docs.sh"; status=1
  fi
done
[[ $status -eq 0 ]] && echo "ok: docs/dialect matches the ODS definitions"
exit $status
