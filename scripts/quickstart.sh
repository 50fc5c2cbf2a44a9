#!/usr/bin/env bash
# The README's main command: sets everything up on a fresh machine and runs the quickstart.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
echo "==> installing dependencies"
pnpm install --frozen-lockfile --reporter=silent
echo "==> building"
pnpm exec turbo run build --ui=stream --output-logs=errors-only >/dev/null
echo "==> running examples/quickstart against the fake server (the real server is not built yet)"
cd examples/quickstart
node src/with-fake.ts
