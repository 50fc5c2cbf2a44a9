# Source this file: installs the Debian packages the real server needs (bubblewrap, and the
# util-linux/coreutils/e2fsprogs it already expects; python3, which the default image offers
# to sandboxed code; attr's setfattr, with which the image store marks overlayfs opaque
# directories), what builds and tests the in-sandbox agent (Go; qemu-user-static to run its
# arm64 build once), and what the image store's tests use (a registry, skopeo, htpasswd and
# openssl for the registries' auth, a static busybox and mmdebstrap for test images), only
# when something is missing.
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
command -v setfattr >/dev/null 2>&1 || sbx_missing+=(attr)
# Image store tests: a real registry on loopback, skopeo to push to it and make archives.
command -v docker-registry >/dev/null 2>&1 || sbx_missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || sbx_missing+=(skopeo)
command -v htpasswd >/dev/null 2>&1 || sbx_missing+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || sbx_missing+=(openssl)
command -v mmdebstrap >/dev/null 2>&1 || sbx_missing+=(mmdebstrap)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || sbx_missing+=(busybox-static)
if [ "${#sbx_missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "sbx: the server needs: ${sbx_missing[*]} (install them with apt-get as root)" >&2
  else
    echo "sbx: installing ${sbx_missing[*]} (apt-get)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${sbx_missing[@]}" >/dev/null
    # The tests start their own registries: the package's service (port 5000) is not wanted.
    if [[ " ${sbx_missing[*]} " == *" docker-registry "* ]] && command -v systemctl >/dev/null 2>&1; then
      systemctl disable --now docker-registry >/dev/null 2>&1 || true
    fi
  fi
fi
unset sbx_missing
