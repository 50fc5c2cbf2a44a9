# Source this file: installs the Debian packages running sbx needs, only when something is
# missing: the real server's (bubblewrap, and the util-linux/coreutils/e2fsprogs it already
# expects; python3, which the default image offers to sandboxed code; attr's setfattr, with
# which the image store marks overlayfs opaque directories; iproute2, nftables and conntrack
# for sandboxes' network) and Go, which builds the
# in-sandbox agent. What only the tests use is in scripts/test-deps.sh.
source "$(dirname "${BASH_SOURCE[0]}")/apt-deps.sh"
sbx_missing=()
command -v bwrap >/dev/null 2>&1 || sbx_missing+=(bubblewrap)
command -v setpriv >/dev/null 2>&1 || sbx_missing+=(util-linux)
command -v unshare >/dev/null 2>&1 || sbx_missing+=(util-linux)
# Sandbox disks are ext4 images (mkfs.ext4 -d needs e2fsprogs >= 1.43; Debian 12 has 1.47).
PATH="$PATH:/usr/sbin:/sbin" command -v mkfs.ext4 >/dev/null 2>&1 || sbx_missing+=(e2fsprogs)
command -v mkfifo >/dev/null 2>&1 || sbx_missing+=(coreutils)
[ -x /usr/bin/python3 ] || sbx_missing+=(python3)
command -v go >/dev/null 2>&1 || sbx_missing+=(golang-go)
command -v setfattr >/dev/null 2>&1 || sbx_missing+=(attr)
# Sandboxes' network: veth links and their namespace's config (ip, nsenter), the policy table
# (nft), cutting a sandbox's tracked connections (conntrack).
PATH="$PATH:/usr/sbin:/sbin" command -v ip >/dev/null 2>&1 || sbx_missing+=(iproute2)
PATH="$PATH:/usr/sbin:/sbin" command -v nft >/dev/null 2>&1 || sbx_missing+=(nftables)
PATH="$PATH:/usr/sbin:/sbin" command -v conntrack >/dev/null 2>&1 || sbx_missing+=(conntrack)
command -v nsenter >/dev/null 2>&1 || sbx_missing+=(util-linux)
sbx_apt_install "the server" "${sbx_missing[@]}"
unset sbx_missing
