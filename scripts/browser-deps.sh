# Source this file: installs Debian's Chromium, which the browser tests drive headless
# (packages/runtime-tests/src/chromium.test.ts), only when it is missing. Sourced by
# scripts/test.sh only: running sbx (scripts/quickstart.sh) needs no browser.
source "$(dirname "${BASH_SOURCE[0]}")/apt-deps.sh"
[ -x /usr/bin/chromium ] || sbx_apt_install "the browser tests" chromium
