package main

// mount-root: the one privileged, host-side job of this binary. It mounts a sandbox's root on
// the host as host root, before the sandbox exists, and never runs inside a sandbox (it
// refuses to run anywhere but as root of the host's own user namespace).
//
//	sbx-agent mount-root --target DIR --upper-disk DIR --id-from L --id-to B (--lower DIR | --lower-idmapped DIR)...
//
// The root is an overlay: its lower dirs, top first, are read-only clones of the given dirs —
// image layers of the store seen through an idmap (host ids L+u shown as B+u: the store keeps
// an image's uid u as L+u, the sandbox's block starts at B), or dirs taken as they are (the
// default image's root-owned skeleton, the mount-point layer). Its upper and work dirs are
// `upper` and `work` of the sandbox's disk (mounted at --upper-disk), seen through the same
// idmap and writable: the disk stores owners as the store does (L+u), so it can later be
// mounted for any block, or become a layer as it is.
//
// The clones are detached mounts (open_tree OPEN_TREE_CLONE, mount_setattr): overlayfs is
// given them as /proc/self/fd/N, resolves each once and keeps private clones, so nothing
// idmapped is ever attached to a path of the host, and nothing is left once the overlay is
// unmounted. The paths come from the server (store paths named by digests, the sandbox's own
// dirs), never from image content; this program opens nothing below a layer or the disk.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// Syscall numbers: the same on amd64 and arm64 (the unified table, 424 and up).
const (
	sysOpenTree     = 428
	sysMoveMount    = 429
	sysFsopen       = 430
	sysFsconfig     = 431
	sysFsmount      = 432
	sysMountSetattr = 442

	openTreeClone   = 0x1
	atEmptyPath     = 0x1000
	mountAttrRdonly = 0x1
	mountAttrNosuid = 0x2
	mountAttrNodev  = 0x4
	mountAttrIdmap  = 0x100000

	fsopenCloexec          = 0x1
	fsconfigSetFlag        = 0
	fsconfigSetString      = 1
	fsconfigCmdCreate      = 6
	fsmountCloexec         = 0x1
	moveMountFEmptyPath    = 0x4
	stRdonly               = 0x1
	linuxCapabilityVersion = 0x20080522

	// Ids of a sandbox, and of an image (the store refuses higher ones).
	idBlock = 65536
	// The highest host id ((uid_t)-1 is not one).
	maxHostID = 0xfffffffe
	// mount(2) copies one page of options; past it the lower dirs go one by one (fsconfig).
	maxMountData = 4095
	// overlayfs' own limit on lower layers.
	maxLowerDirs = 500
)

// AT_FDCWD (-100) as a syscall argument.
var atFdcwdArg = ^uintptr(99)

// struct mount_attr (MOUNT_ATTR_SIZE_VER0).
type mountAttr struct {
	attrSet     uint64
	attrClr     uint64
	propagation uint64
	usernsFd    uint64
}

type lowerDir struct {
	path     string
	idmapped bool
}

type mountRootArgs struct {
	target    string
	upperDisk string
	idFrom    int
	idTo      int
	lowers    []lowerDir // top first
}

func parseMountRootArgs(args []string) (*mountRootArgs, error) {
	a := &mountRootArgs{idFrom: -1, idTo: -1}
	for i := 0; i < len(args); i++ {
		name := args[i]
		if i+1 >= len(args) {
			return nil, fmt.Errorf("%s needs a value", name)
		}
		value := args[i+1]
		i++
		switch name {
		case "--target":
			a.target = value
		case "--upper-disk":
			a.upperDisk = value
		case "--id-from", "--id-to":
			n, err := strconv.Atoi(value)
			if err != nil || n < 1 || n > maxHostID-idBlock+1 {
				return nil, fmt.Errorf("%s must be a host id with %d ids above it, not %q", name, idBlock, value)
			}
			if name == "--id-from" {
				a.idFrom = n
			} else {
				a.idTo = n
			}
		case "--lower", "--lower-idmapped":
			a.lowers = append(a.lowers, lowerDir{path: value, idmapped: name == "--lower-idmapped"})
		default:
			return nil, fmt.Errorf("unknown argument %q", name)
		}
	}
	if a.target == "" || a.upperDisk == "" || a.idFrom < 0 || a.idTo < 0 || len(a.lowers) == 0 {
		return nil, errors.New("--target, --upper-disk, --id-from, --id-to and at least one lower dir are needed")
	}
	if len(a.lowers) > maxLowerDirs {
		return nil, fmt.Errorf("%d lower dirs: overlayfs takes at most %d", len(a.lowers), maxLowerDirs)
	}
	seen := map[string]bool{}
	for _, p := range append([]string{a.target, a.upperDisk}, lowerPaths(a.lowers)...) {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("%q is not an absolute path", p)
		}
	}
	for _, l := range a.lowers {
		if seen[l.path] {
			return nil, fmt.Errorf("lower dir %s is given twice (overlayfs refuses a layer twice: collapse duplicates)", l.path)
		}
		seen[l.path] = true
	}
	return a, nil
}

func lowerPaths(lowers []lowerDir) []string {
	out := make([]string, len(lowers))
	for i, l := range lowers {
		out[i] = l.path
	}
	return out
}

// onHostAsRoot says why this process may not mount roots: it must be root of the host's own
// user namespace (a sandbox's root, in a namespace of its own, is refused).
func onHostAsRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("mount-root runs as root on the host only")
	}
	uidMap, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return fmt.Errorf("mount-root: cannot read /proc/self/uid_map: %w", err)
	}
	if fields := strings.Fields(string(uidMap)); len(fields) != 3 || fields[0] != "0" || fields[1] != "0" || fields[2] != "4294967295" {
		return errors.New("mount-root runs on the host only, not inside a user namespace")
	}
	return nil
}

func cmdMountRoot(args []string) error {
	if err := onHostAsRoot(); err != nil {
		return err
	}
	a, err := parseMountRootArgs(args)
	if err != nil {
		return fmt.Errorf("mount-root: %w", err)
	}
	// The thread that starts the idmap namespace's holder (whose parent-death signal is tied to
	// it) and later mounts with the sandbox root's fs ids: never unlocked, it ends with the program.
	runtime.LockOSThread()
	userns, err := idmapUserns(a.idFrom, a.idTo)
	if err != nil {
		return fmt.Errorf("mount-root: the idmap user namespace: %w", err)
	}
	defer syscall.Close(userns)
	lower := make([]string, 0, len(a.lowers))
	for _, l := range a.lowers {
		fd, err := detachedClone(l.path, userns, l.idmapped, false)
		if err != nil {
			return fmt.Errorf("mount-root: %w", err)
		}
		defer syscall.Close(fd)
		lower = append(lower, fdPath(fd))
	}
	disk, err := detachedClone(a.upperDisk, userns, true, true)
	if err != nil {
		return fmt.Errorf("mount-root: %w", err)
	}
	defer syscall.Close(disk)
	upper, work := fdPath(disk)+"/upper", fdPath(disk)+"/work"

	// overlayfs does its own work in the upper (its work dir, copy-ups) with the mounter's
	// credentials, which must map through the upper's idmap: else it mounts read-only, saying
	// so only in the kernel log. So the mount is made with fsuid/fsgid = the sandbox's root, on
	// this thread alone (locked above).
	if err := actAsFsIds(a.idTo); err != nil {
		return fmt.Errorf("mount-root: %w", err)
	}
	data := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + work + ",userxattr"
	if len(data) <= maxMountData {
		err = syscall.Mount("overlay", a.target, "overlay", syscall.MS_NOSUID|syscall.MS_NODEV, data)
	} else {
		err = mountOverlayByConfig(a.target, lower, upper, work)
	}
	if err != nil {
		return fmt.Errorf("mount-root: mounting the overlay on %s: %w", a.target, err)
	}
	// A root that would lose every write must not start.
	var st syscall.Statfs_t
	if err := syscall.Statfs(a.target, &st); err != nil || st.Flags&stRdonly != 0 {
		syscall.Unmount(a.target, syscall.MNT_DETACH)
		return fmt.Errorf("mount-root: the overlay on %s came up read-only (its upper dir must be owned within the id block)", a.target)
	}
	return nil
}

func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// idmapUserns answers a descriptor of a new user namespace mapping from..from+65535 (its ids)
// onto to..to+65535 (host ids), for MOUNT_ATTR_IDMAP. The descriptor keeps the namespace; its
// holder is then killed. The namespace holds no process and grants nothing: it only
// translates the mounts' ids.
func idmapUserns(from, to int) (int, error) {
	holder, err := startIdmapHolder(from, to)
	if err != nil {
		return -1, err
	}
	defer holder.stop()
	return syscall.Open(fmt.Sprintf("/proc/%d/ns/user", holder.cmd.Process.Pid), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
}

// idmapHolder is the process a user namespace is made by: this program again (`idmap-holder`,
// which only waits for its stdin to end), started by Go's os/exec in a new user namespace whose
// maps Go writes (host root) before the child execs. It ends with this process however that
// ends: its parent-death signal is set in the child before the exec, with Go's own check that
// the parent is still there, and its stdin (a pipe from here) ends when this process does.
type idmapHolder struct {
	cmd   *exec.Cmd
	stdin io.Closer
}

func startIdmapHolder(from, to int) (*idmapHolder, error) {
	ids := []syscall.SysProcIDMap{{ContainerID: from, HostID: to, Size: idBlock}}
	// This very program, whatever became of its path since it started (replaced, removed).
	cmd := exec.Command("/proc/self/exe", "idmap-holder")
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: ids,
		GidMappings: ids,
		Pdeathsig:   syscall.SIGKILL,
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		stdin.Close()
		return nil, fmt.Errorf("starting a process in a new user namespace: %w", err)
	}
	return &idmapHolder{cmd: cmd, stdin: stdin}, nil
}

func (h *idmapHolder) stop() {
	h.stdin.Close()
	h.cmd.Process.Kill()
	h.cmd.Wait()
}

// holdIdmap is the idmap holder's whole life: wait for stdin to end.
func holdIdmap() {
	io.Copy(io.Discard, os.Stdin)
}

// detachedClone answers a detached mount: a clone of the tree at path (not its submounts),
// nosuid, nodev, read-only unless writable, its owners seen through userns when idmapped.
func detachedClone(path string, userns int, idmapped, writable bool) (int, error) {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return -1, err
	}
	// The paths are root's own (the store's, the sandbox's dir): a symlink there is refused, not followed.
	r, _, errno := syscall.Syscall(sysOpenTree, atFdcwdArg, uintptr(unsafe.Pointer(p)), openTreeClone|syscall.O_CLOEXEC|atSymlinkNofollow)
	if errno != 0 {
		return -1, fmt.Errorf("open_tree %s: %w", path, errno)
	}
	fd := int(r)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		syscall.Close(fd)
		return -1, fmt.Errorf("%s is not a directory", path)
	}
	attr := mountAttr{attrSet: mountAttrNosuid | mountAttrNodev}
	if !writable {
		attr.attrSet |= mountAttrRdonly
	}
	if idmapped {
		attr.attrSet |= mountAttrIdmap
		attr.usernsFd = uint64(userns)
	}
	empty, _ := syscall.BytePtrFromString("")
	if _, _, errno := syscall.Syscall6(sysMountSetattr, uintptr(fd), uintptr(unsafe.Pointer(empty)), atEmptyPath,
		uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0); errno != 0 {
		syscall.Close(fd)
		what := "mount_setattr"
		if idmapped {
			what = "mount_setattr(MOUNT_ATTR_IDMAP)"
		}
		return -1, fmt.Errorf("%s %s: %w", what, path, errno)
	}
	return fd, nil
}

type capHeader struct {
	version uint32
	pid     int32
}

type capData struct{ effective, permitted, inheritable uint32 }

// actAsFsIds sets this thread's fsuid and fsgid. A non-zero fsuid drops the effective file
// capabilities (dac_override, chown, fowner…); they are taken back from the permitted set, on
// this thread only.
func actAsFsIds(id int) error {
	syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(id), 0, 0)
	syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(id), 0, 0)
	hdr := capHeader{version: linuxCapabilityVersion}
	var data [2]capData
	if _, _, e := syscall.RawSyscall(syscall.SYS_CAPGET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capget: %w", e)
	}
	data[0].effective, data[1].effective = data[0].permitted, data[1].permitted
	if _, _, e := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("capset: %w", e)
	}
	return nil
}

// mountOverlayByConfig mounts an overlay whose options do not fit mount(2)'s page: each lower
// dir is given on its own (fsconfig "lowerdir+", Linux 6.8 and later).
func mountOverlayByConfig(target string, lower []string, upper, work string) error {
	name, _ := syscall.BytePtrFromString("overlay")
	r, _, errno := syscall.Syscall(sysFsopen, uintptr(unsafe.Pointer(name)), fsopenCloexec, 0)
	if errno != 0 {
		return fmt.Errorf("fsopen: %w", errno)
	}
	fs := int(r)
	defer syscall.Close(fs)
	set := func(cmd int, key, value string) error {
		k, _ := syscall.BytePtrFromString(key)
		var v *byte
		if cmd == fsconfigSetString {
			v, _ = syscall.BytePtrFromString(value)
		}
		if _, _, errno := syscall.Syscall6(sysFsconfig, uintptr(fs), uintptr(cmd), uintptr(unsafe.Pointer(k)), uintptr(unsafe.Pointer(v)), 0, 0); errno != 0 {
			if key == "lowerdir+" && errno == syscall.EINVAL {
				return fmt.Errorf("%d lower dirs need fsconfig lowerdir+ (Linux 6.8 or later): %w", len(lower), errno)
			}
			return fmt.Errorf("fsconfig %s: %w", key, errno)
		}
		return nil
	}
	for _, l := range lower {
		if err := set(fsconfigSetString, "lowerdir+", l); err != nil {
			return err
		}
	}
	for _, kv := range [][2]string{{"upperdir", upper}, {"workdir", work}} {
		if err := set(fsconfigSetString, kv[0], kv[1]); err != nil {
			return err
		}
	}
	if err := set(fsconfigSetFlag, "userxattr", ""); err != nil {
		return err
	}
	if _, _, errno := syscall.Syscall6(sysFsconfig, uintptr(fs), fsconfigCmdCreate, 0, 0, 0, 0); errno != 0 {
		return fmt.Errorf("fsconfig create: %w", errno)
	}
	r, _, errno = syscall.Syscall(sysFsmount, uintptr(fs), fsmountCloexec, mountAttrNosuid|mountAttrNodev)
	if errno != 0 {
		return fmt.Errorf("fsmount: %w", errno)
	}
	mnt := int(r)
	defer syscall.Close(mnt)
	empty, _ := syscall.BytePtrFromString("")
	t, err := syscall.BytePtrFromString(target)
	if err != nil {
		return err
	}
	if _, _, errno := syscall.Syscall6(sysMoveMount, uintptr(mnt), uintptr(unsafe.Pointer(empty)), atFdcwdArg,
		uintptr(unsafe.Pointer(t)), moveMountFEmptyPath, 0); errno != 0 {
		return fmt.Errorf("move_mount: %w", errno)
	}
	return nil
}
