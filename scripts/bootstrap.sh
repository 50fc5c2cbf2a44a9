# Source this file: it makes a suitable Node (24) and pnpm available to this project only.
# On a fresh machine (Node 20, npm, no pnpm) it installs both from the npm registry into
# ./.tools (git-ignored) and puts them first on PATH for the current shell. Nothing outside
# the project is touched.
SBX_NODE_VERSION="24"
SBX_PNPM_VERSION="10.34.9"
sbx_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
sbx_tools="$sbx_root/.tools"

sbx_node_ok() {
  command -v node >/dev/null 2>&1 && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 22 ]
}

if [ -x "$sbx_tools/node_modules/.bin/node" ]; then
  export PATH="$sbx_tools/node_modules/.bin:$PATH"
fi
if ! sbx_node_ok || ! command -v pnpm >/dev/null 2>&1 || [ "$(pnpm --version 2>/dev/null)" != "$SBX_PNPM_VERSION" ]; then
  echo "sbx: installing Node $SBX_NODE_VERSION and pnpm $SBX_PNPM_VERSION into $sbx_tools (npm registry)"
  mkdir -p "$sbx_tools"
  [ -f "$sbx_tools/package.json" ] || echo '{"name":"sbx-tools","private":true}' > "$sbx_tools/package.json"
  (cd "$sbx_tools" && npm install --no-audit --no-fund --loglevel=error \
    "node@$SBX_NODE_VERSION" "pnpm@$SBX_PNPM_VERSION" >/dev/null) || {
    echo "sbx: could not install Node/pnpm from the npm registry" >&2; return 1 2>/dev/null || exit 1; }
  export PATH="$sbx_tools/node_modules/.bin:$PATH"
fi
if ! sbx_node_ok; then
  echo "sbx: Node >= 22 is required, found $(node --version 2>/dev/null || echo none)" >&2
  return 1 2>/dev/null || exit 1
fi
export npm_config_update_notifier=false
