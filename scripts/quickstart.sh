#!/usr/bin/env bash
# The README's main command: sets everything up on a fresh machine, starts a local sbx
# server, and runs examples/quickstart against it (real sandboxes, real code).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
source scripts/system-deps.sh
export TURBO_TELEMETRY_DISABLED=1 DO_NOT_TRACK=1
echo "==> installing dependencies"
pnpm install --frozen-lockfile --reporter=silent
echo "==> building"
pnpm exec turbo run build --ui=stream --output-logs=errors-only >/dev/null

data_dir="$(mktemp -d /tmp/sbx-quickstart.XXXXXX)"
log="$data_dir/server.log"
echo "==> starting: sbx server --listen 127.0.0.1:0 --data-dir $data_dir"
node packages/cli/dist/main.js server --listen 127.0.0.1:0 --data-dir "$data_dir" >"$log" 2>&1 &
server_pid=$!
cleanup() {
  kill -TERM "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  rm -rf "$data_dir"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  grep -q "listening on" "$log" 2>/dev/null && break
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$log" >&2; exit 1; fi
  sleep 0.1
done
endpoint="$(sed -n 's/^sbx server listening on //p' "$log")"
[ -n "$endpoint" ] || { cat "$log" >&2; exit 1; }
echo "    $(grep 'listening on' "$log")"
export SBX_ENDPOINT="$endpoint" SBX_TOKEN="$(cat "$data_dir/token")"
echo "==> running examples/quickstart"
(cd examples/quickstart && node src/main.ts)
