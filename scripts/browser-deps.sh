# Source this file: installs Debian's Chromium, which the browser tests drive headless
# (packages/runtime-tests/src/chromium.test.ts), only when it is missing. Sourced by
# scripts/test.sh only: running sbx (scripts/quickstart.sh) needs no browser.
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "sbx: the browser tests need Chromium (apt-get install chromium, as root)" >&2
  else
    echo "sbx: installing chromium (apt-get)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
