#!/usr/bin/env bash
# Fails when the committed generated protocol code differs from what is generated now: the
# protobuf-es code of @sbx/proto (buf) and the agent's Go structs (built from @sbx/proto's
# descriptors, so @sbx/proto is built first).
set -euo pipefail
cd "$(dirname "$0")/.."
generated=(packages/proto/src/gen packages/server/agent/protocol.gen.go)
pnpm exec turbo run generate --filter @sbx/server --ui=stream --output-logs=errors-only >/dev/null
if ! git diff --quiet --exit-code -- "${generated[@]}" || [ -n "$(git status --porcelain -- "${generated[@]}")" ]; then
  echo "generated code is out of date: run 'pnpm generate' and commit ${generated[*]}" >&2
  git status --short -- "${generated[@]}" >&2
  exit 1
fi
(cd proto && ../packages/proto/node_modules/.bin/buf lint)
echo "generated code is up to date; buf lint passed"
