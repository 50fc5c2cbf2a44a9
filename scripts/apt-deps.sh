# Source this file: `sbx_apt_install WHO PACKAGE...` installs the Debian packages named (apt-get,
# as root), or says that WHO needs them when not root; nothing when none is named. The *-deps.sh
# scripts call it with what is missing.
sbx_apt_install() {
  local who="$1"
  shift
  [ "$#" -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "sbx: for $who, install $* (with apt-get, as root)" >&2
  else
    echo "sbx: installing $* (apt-get)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}
