#!/usr/bin/env bash
# The README's test command: sets everything up on a fresh machine and runs every check and
# test. .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
source scripts/system-deps.sh
source scripts/test-deps.sh
source scripts/browser-deps.sh
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1

step() { printf '\n==> %s\n' "$*"; }

step "install dependencies"
pnpm install --frozen-lockfile

step "protocol: codegen drift check and buf lint"
bash scripts/check-generated.sh

step "build"
pnpm exec turbo run build --ui=stream --output-logs=errors-only

step "lint and format (biome)"
pnpm exec biome ci .

step "typecheck"
pnpm exec turbo run typecheck --ui=stream --output-logs=errors-only

step "package shape (publint)"
pnpm exec turbo run check:package --ui=stream --output-logs=errors-only

step "tests"
mkdir -p artifacts
status=0
pnpm exec vitest run --reporter=default --reporter=json --outputFile.json=artifacts/vitest.json || status=$?
# One plain summary line, whatever the runner printed above.
node -e '
  const r = JSON.parse(require("node:fs").readFileSync("artifacts/vitest.json", "utf8"));
  console.log(`${r.numPassedTests} passed, ${r.numFailedTests} failed`);
' || true
exit "$status"
