# Source this file: installs the Debian packages that only the tests (and benchmarks) use, only
# when something is missing: qemu-user-static to run the agent's arm64 build once, and what the
# image store's tests use (a registry, skopeo, htpasswd and openssl for the registries' auth, a
# static busybox and mmdebstrap for test images), and pigz for the pull bench's baseline.
# Sourced by scripts/test.sh, after scripts/system-deps.sh (what running sbx needs).
source "$(dirname "${BASH_SOURCE[0]}")/apt-deps.sh"
sbx_missing=()
command -v qemu-aarch64-static >/dev/null 2>&1 || sbx_missing+=(qemu-user-static)
# Image store tests: a real registry on loopback, skopeo to push to it and make archives.
command -v docker-registry >/dev/null 2>&1 || sbx_missing+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || sbx_missing+=(skopeo)
command -v htpasswd >/dev/null 2>&1 || sbx_missing+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || sbx_missing+=(openssl)
command -v mmdebstrap >/dev/null 2>&1 || sbx_missing+=(mmdebstrap)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "ok installed" || sbx_missing+=(busybox-static)
# The image pull bench's baseline unpacks layers with pigz.
command -v pigz >/dev/null 2>&1 || sbx_missing+=(pigz)
sbx_apt_install "the tests" "${sbx_missing[@]}"
# The tests start their own registries: the package's service (port 5000) is not wanted.
if [[ " ${sbx_missing[*]} " == *" docker-registry "* ]] && [ "$(id -u)" -eq 0 ] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
unset sbx_missing
