package main

// Who the sandbox's processes run as: the image's User, looked up in the sandbox's own
// /etc/passwd and /etc/group. Those files are the image's (and the sandbox's root may rewrite
// them): hostile input, read with bounds, which can only ever affect this sandbox. Processes
// get the user's ids and groups when they start (setgroups, setgid, setuid in the child), and
// root's processes Docker's capabilities (less three). File calls act as the user without any capability
// (permission bits bind root too, as the files API has always promised) on threads whose fs
// ids, groups and capabilities are their own (setfsuid, setfsgid, setgroups and capset hold
// for one thread only), so the kernel checks every path as it would for that user.

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

// Most bytes read of /etc/passwd or /etc/group (more is refused).
const maxAccountFile = 4 << 20

// Longest home directory taken from passwd (PATH_MAX).
const maxHomeLength = 4096

// credentials are ids of the sandbox's user namespace.
type credentials struct {
	uid, gid uint32
	groups   []uint32
	home     string
}

func (c *credentials) identity() *Identity {
	return &Identity{Uid: c.uid, Gid: c.gid, Groups: c.groups, Home: c.home}
}

// acting holds who the agent acts as once configured (nil: itself, the sandbox's root).
type acting struct {
	mu    sync.Mutex
	creds *credentials
	// Bumped on every change, so each thread that carries the user's ids knows when to reapply.
	generation uint64
}

func (a *acting) set(c *credentials) {
	a.mu.Lock()
	a.creds = c
	a.generation++
	a.mu.Unlock()
}

func (a *acting) current() (*credentials, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.creds, a.generation
}

// userThread runs functions on one OS thread that carries the user's fs ids (the checks before
// an exec: its working directory and its program, as the user would find them). Started when
// first needed: only a sandbox whose processes run as a configured user has one.
type userThread struct {
	start  sync.Once
	thread *lockedThread
	who    *acting
	// The generation of `who` the thread carries (touched on the thread only).
	applied uint64
}

func newUserThread(who *acting) *userThread {
	return &userThread{who: who}
}

func (t *userThread) do(fn func()) {
	t.start.Do(func() { t.thread = startLockedThread() })
	t.thread.do(func() {
		if creds, generation := t.who.current(); generation != t.applied {
			// With the capabilities the user's processes will have (root's: Docker's set less three).
			if err := actAs(creds, true); err != nil {
				fatal("cannot act as the sandbox user: %v", err)
			}
			t.applied = generation
		}
		fn()
	})
}

// actAs gives the calling thread (locked to its goroutine) the user's groups and fs ids (nil:
// the agent's own, root's), with its effective capabilities (`withCaps`: as the user's
// processes get them, else none at all). Going from fs id 0 to another drops the file
// capabilities (dac_override, chown, fowner…) in any case, as for a process of that user.
func actAs(c *credentials, withCaps bool) error {
	// setgroups needs CAP_SETGID: first the thread's effective set back from its permitted one.
	if err := setEffectiveCaps(true); err != nil {
		return err
	}
	if c != nil {
		if err := setIds(c); err != nil {
			return err
		}
	}
	if !withCaps {
		return setEffectiveCaps(false)
	}
	return nil
}

// setEffectiveCaps makes the calling thread's effective capabilities its permitted ones
// (raise), or none.
func setEffectiveCaps(raise bool) error {
	hdr := capHeader{version: linuxCapabilityVersion}
	var data [2]capData
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CAPGET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		return fmt.Errorf("capget: %w", errno)
	}
	for i := range data {
		data[i].effective = 0
		if raise {
			data[i].effective = data[i].permitted
		}
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		return fmt.Errorf("capset: %w", errno)
	}
	return nil
}

func setIds(c *credentials) error {
	var groups unsafe.Pointer
	if len(c.groups) > 0 {
		groups = unsafe.Pointer(&c.groups[0])
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_SETGROUPS, uintptr(len(c.groups)), uintptr(groups), 0); errno != 0 {
		return fmt.Errorf("setgroups: %w", errno)
	}
	syscall.RawSyscall(syscall.SYS_SETFSGID, uintptr(c.gid), 0, 0)
	syscall.RawSyscall(syscall.SYS_SETFSUID, uintptr(c.uid), 0, 0)
	// setfs[ug]id report no failure: check that they took.
	if got, _, _ := syscall.RawSyscall(syscall.SYS_SETFSUID, ^uintptr(0), 0, 0); uint32(got) != c.uid {
		return fmt.Errorf("setfsuid(%d) did not take", c.uid)
	}
	if got, _, _ := syscall.RawSyscall(syscall.SYS_SETFSGID, ^uintptr(0), 0, 0); uint32(got) != c.gid {
		return fmt.Errorf("setfsgid(%d) did not take", c.gid)
	}
	return nil
}

// readAccountFile reads /etc/passwd or /etc/group of the sandbox: a regular file of bounded
// size (a missing one is empty; a FIFO, device or huge file is refused).
func readAccountFile(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err == syscall.ENOENT || err == syscall.ENOTDIR {
		return nil, nil
	}
	if err != nil {
		return nil, pathErr("open", path, err)
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, pathErr("fstat", path, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if st.Size > maxAccountFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxAccountFile)
	}
	buf := make([]byte, st.Size+1)
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, pathErr("read", path, err)
		}
		if m == 0 {
			break
		}
		n += m
	}
	if n > maxAccountFile {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxAccountFile)
	}
	return buf[:n], nil
}

type passwdEntry struct {
	name     string
	uid, gid int
	home     string
}

type groupEntry struct {
	name    string
	gid     int
	members []string
}

// accountLines are the colon-separated lines of an account file (blank lines and comments
// left out).
func accountLines(data []byte) [][]string {
	var out [][]string
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		out = append(out, strings.Split(string(line), ":"))
	}
	return out
}

// parseID reads a uid or gid field: a decimal number, or -1 when it is not one.
func parseID(field string) int {
	n, err := strconv.ParseUint(field, 10, 32)
	if err != nil || field == "" || field[0] == '+' {
		return -1
	}
	return int(n)
}

// Lines with a malformed id are left out (never read as 0, which would be root).
func parsePasswd(data []byte) []passwdEntry {
	var out []passwdEntry
	for _, f := range accountLines(data) {
		if len(f) < 4 {
			continue
		}
		uid, gid := parseID(f[2]), parseID(f[3])
		if uid < 0 || gid < 0 {
			continue
		}
		e := passwdEntry{name: f[0], uid: uid, gid: gid}
		if len(f) > 5 {
			e.home = f[5]
		}
		out = append(out, e)
	}
	return out
}

func parseGroup(data []byte) []groupEntry {
	var out []groupEntry
	for _, f := range accountLines(data) {
		if len(f) < 3 {
			continue
		}
		gid := parseID(f[2])
		if gid < 0 {
			continue
		}
		e := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 && f[3] != "" {
			e.members = strings.Split(f[3], ",")
		}
		out = append(out, e)
	}
	return out
}

// checkID refuses an id the sandbox's user namespace does not map.
func checkID(what string, id int) error {
	if id < 0 || id >= idBlock {
		return fmt.Errorf("%s %d is outside the ids a sandbox has (0-%d)", what, id, idBlock-1)
	}
	return nil
}

// resolveUser finds who `spec` names ("name", "uid", "name:group", "uid:gid"; empty: root) the
// way runc does: a name must be in passwd, a number need not be; the first matching line wins;
// a user found in passwd gets the groups that list it as a member, unless the group is given;
// a group must be in group unless it is a number. Home is passwd's, else "/".
func resolveUser(spec string, passwd, group []byte) (*credentials, error) {
	userPart, groupPart := spec, ""
	hasGroup := false
	if i := strings.IndexByte(spec, ':'); i >= 0 {
		userPart, groupPart, hasGroup = spec[:i], spec[i+1:], true
	}
	if hasGroup && groupPart == "" {
		return nil, fmt.Errorf("user %q names an empty group", spec)
	}
	c := &credentials{home: "/"}
	uid, gid := 0, 0
	matchedName := ""
	byNumber := parseID(userPart)
	for _, e := range parsePasswd(passwd) {
		if (userPart == "" && e.uid == 0) || (byNumber >= 0 && e.uid == byNumber) || (byNumber < 0 && e.name == userPart) {
			matchedName, uid, gid = e.name, e.uid, e.gid
			// An absolute path of sane length (it becomes HOME); else "/".
			if strings.HasPrefix(e.home, "/") && len(e.home) <= maxHomeLength {
				c.home = e.home
			}
			break
		}
	}
	if matchedName == "" && userPart != "" {
		if byNumber < 0 {
			return nil, fmt.Errorf("unable to find user %s: no matching entries in /etc/passwd", userPart)
		}
		uid = byNumber
	}
	if err := checkID("user "+strconv.Quote(spec)+": uid", uid); err != nil {
		return nil, err
	}
	groups := parseGroup(group)
	if hasGroup {
		gidNumber := parseID(groupPart)
		found := false
		for _, g := range groups {
			if (gidNumber >= 0 && g.gid == gidNumber) || (gidNumber < 0 && g.name == groupPart) {
				gid, found = g.gid, true
				break
			}
		}
		if !found {
			if gidNumber < 0 {
				return nil, fmt.Errorf("unable to find group %s: no matching entries in /etc/group", groupPart)
			}
			gid = gidNumber
		}
	} else if matchedName != "" {
		for _, g := range groups {
			for _, member := range g.members {
				if member == matchedName && checkID("group", g.gid) == nil {
					c.groups = append(c.groups, uint32(g.gid))
					break
				}
			}
		}
	}
	if err := checkID("user "+strconv.Quote(spec)+": gid", gid); err != nil {
		return nil, err
	}
	c.uid, c.gid = uint32(uid), uint32(gid)
	if c.groups == nil {
		c.groups = []uint32{}
	}
	return c, nil
}

// makeWorkdir makes dir and its missing parents (mode 0755), owned by the sandbox's root
// (0:0), as Docker makes a container's WorkingDir (moby's SetupWorkingDirectory: the
// container's root pair, whatever its User): the user gets no directory it did not have,
// parents included. It resolves inside the sandbox's root, as its root (the agent), before
// any process of the sandbox runs.
func makeWorkdir(dir string) error {
	if !strings.HasPrefix(dir, "/") {
		return fmt.Errorf("the working directory %q is not absolute", dir)
	}
	prefix := ""
	for _, part := range strings.Split(dir, "/") {
		if part == "" {
			continue
		}
		prefix += "/" + part
		st, err := stat(prefix)
		if err == nil {
			if !isDir(st) {
				return &fsError{FileErrorKindNotADirectory, prefix + ": not a directory"}
			}
			continue
		}
		if errnoOf(err) != syscall.ENOENT {
			return err
		}
		if err := syscall.Mkdir(prefix, 0o755); err != nil && err != syscall.EEXIST {
			return pathErr("mkdir", prefix, err)
		}
		// Root's, whatever the parent's set-group-id bit would have given it.
		if err := syscall.Lchown(prefix, 0, 0); err != nil {
			return pathErr("chown", prefix, err)
		}
	}
	return nil
}

// configure looks up the user and makes the working directory; from then on every process
// runs as the user and file calls act as it.
func (a *agent) configure(id string, req *Configure) {
	if c, _ := a.identity.current(); c != nil {
		a.emit(&Event{Id: id, Error: &RequestError{Error: "the sandbox's user is already set"}})
		return
	}
	c, err := lookUpUser(req.User)
	if err == nil && req.Workdir != "" {
		err = makeWorkdir(req.Workdir)
	}
	if err != nil {
		a.emit(&Event{Id: id, Error: &RequestError{Error: describeErr(err)}})
		return
	}
	a.identity.set(c)
	a.emit(&Event{Id: id, Identity: c.identity()})
}

func lookUpUser(spec string) (*credentials, error) {
	passwd, err := readAccountFile("/etc/passwd")
	if err != nil {
		return nil, err
	}
	group, err := readAccountFile("/etc/group")
	if err != nil {
		return nil, err
	}
	return resolveUser(spec, passwd, group)
}
