#!/usr/bin/env bash
# Fails when the committed generated protocol code differs from what buf generates now.
set -euo pipefail
cd "$(dirname "$0")/.."
pnpm --filter @sbx/proto run generate >/dev/null
if ! git diff --quiet --exit-code -- packages/proto/src/gen || [ -n "$(git status --porcelain -- packages/proto/src/gen)" ]; then
  echo "generated code is out of date: run 'pnpm generate' and commit packages/proto/src/gen" >&2
  git status --short -- packages/proto/src/gen >&2
  exit 1
fi
(cd proto && ../packages/proto/node_modules/.bin/buf lint)
echo "generated code is up to date; buf lint passed"
