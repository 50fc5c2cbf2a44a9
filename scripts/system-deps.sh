# Source this file: installs the Debian packages the real server needs (bubblewrap, and the
# util-linux/coreutils/e2fsprogs it already expects; python3, which the default image offers
# to sandboxed code), and what builds and tests the in-sandbox agent (Go; qemu-user-static to
# run its arm64 build once), only when something is missing.
sbx_missing=()
command -v bwrap >/dev/null 2>&1 || sbx_missing+=(bubblewrap)
command -v setpriv >/dev/null 2>&1 || sbx_missing+=(util-linux)
command -v unshare >/dev/null 2>&1 || sbx_missing+=(util-linux)
# Sandbox disks are ext4 images (mkfs.ext4 -d needs e2fsprogs >= 1.43; Debian 12 has 1.47).
PATH="$PATH:/usr/sbin:/sbin" command -v mkfs.ext4 >/dev/null 2>&1 || sbx_missing+=(e2fsprogs)
command -v mkfifo >/dev/null 2>&1 || sbx_missing+=(coreutils)
[ -x /usr/bin/python3 ] || sbx_missing+=(python3)
command -v go >/dev/null 2>&1 || sbx_missing+=(golang-go)
command -v qemu-aarch64-static >/dev/null 2>&1 || sbx_missing+=(qemu-user-static)
if [ "${#sbx_missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "sbx: the server needs: ${sbx_missing[*]} (install them with apt-get as root)" >&2
  else
    echo "sbx: installing ${sbx_missing[*]} (apt-get)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${sbx_missing[@]}" >/dev/null
  fi
fi
unset sbx_missing
