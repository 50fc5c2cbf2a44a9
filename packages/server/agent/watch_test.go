package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A recursive watch of a user's directory: what it adds after it started (a directory moved
// in) is watched and listed as the user, without capabilities, and never through a symlink.
// The user is uid 1234: a root-only directory moved in is not listed (its entries' names would
// leak), and a symlink to a directory elsewhere is neither watched nor entered.
func TestRecursiveWatchAddsWhatItFindsAsTheUserAndFollowsNoSymlink(t *testing.T) {
	u := startUserWatch(t)
	top, outside := u.top, u.mine("outside")
	box := u.mine(filepath.Join("stage", "box"))
	vault := filepath.Join(box, "vault")
	if err := os.Mkdir(vault, 0o700); err != nil { // root's
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(vault, "secret"), nil, 0o600)
	if err := os.Symlink(outside, filepath.Join(box, "link")); err != nil {
		t.Fatal(err)
	}

	// Moved in whole: the watch lists it (as the user) and watches its directories.
	if err := os.Rename(box, filepath.Join(top, "box")); err != nil {
		t.Fatal(err)
	}
	u.waitFor(filepath.Join(top, "box", "link"))
	// A change where the symlink leads, then a marker: the marker's event comes after any
	// event of the symlink's target (one inotify queue), were it watched.
	os.WriteFile(filepath.Join(outside, "y"), nil, 0o644)
	os.WriteFile(filepath.Join(top, "done"), nil, 0o644)
	u.waitFor(filepath.Join(top, "done"))

	for _, p := range u.seen {
		if strings.Contains(p, "secret") {
			t.Errorf("an entry of a directory the user may not list was reported: %s", p)
		}
		if strings.HasPrefix(p, filepath.Join(top, "box", "link")+"/") {
			t.Errorf("a symlink was followed: %s", p)
		}
	}
	if !contains(u.seen, filepath.Join(top, "box", "vault")) {
		t.Errorf("the root-only directory's own name (the user may see it) was not reported: %q", u.seen)
	}
}

// A directory moved out of the watched tree is no longer watched: its events would be told by
// its old path, and a directory made in it would be added by that path, through whatever the
// sandbox put under the old name since (here a symlink to a directory outside the root).
func TestRecursiveWatchDropsADirectoryMovedAway(t *testing.T) {
	u := startUserWatch(t)
	top, away, other := u.top, u.mine("away"), u.mine(filepath.Join("other", "x"))
	u.mine(filepath.Join("top", "a"))
	u.waitFor(filepath.Join(top, "a"))

	if err := os.Rename(filepath.Join(top, "a"), filepath.Join(away, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(other), filepath.Join(top, "a")); err != nil {
		t.Fatal(err)
	}
	u.mine(filepath.Join("away", "a", "x")) // an event of the old watch of top/a, "x"
	os.WriteFile(filepath.Join(top, "mark"), nil, 0o644)
	u.waitFor(filepath.Join(top, "mark"))
	os.WriteFile(filepath.Join(other, "m"), nil, 0o644)
	os.WriteFile(filepath.Join(top, "done"), nil, 0o644)
	u.waitFor(filepath.Join(top, "done"))

	for _, p := range u.seen {
		if strings.HasPrefix(p, filepath.Join(top, "a")+"/") {
			t.Errorf("reported under the moved directory's old path: %s", p)
		}
	}
}

// The event of a directory made below the root is handled after the sandbox swapped one of its
// parents for a symlink to a directory outside the root: the add must not go through it.
func TestRecursiveWatchAddsNothingThroughAParentSwappedForASymlink(t *testing.T) {
	u := startUserWatch(t)
	top, away, other := u.top, u.mine("away"), u.mine(filepath.Join("other", "x"))
	u.mine(filepath.Join("top", "a"))
	u.waitFor(filepath.Join(top, "a"))

	release := u.holdWorkers()
	u.mine(filepath.Join("top", "a", "x")) // its add waits for a worker
	if err := os.Rename(filepath.Join(top, "a"), filepath.Join(away, "a")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(other), filepath.Join(top, "a")); err != nil {
		t.Fatal(err)
	}
	release()
	os.WriteFile(filepath.Join(top, "mark"), nil, 0o644)
	u.waitFor(filepath.Join(top, "mark"))
	os.WriteFile(filepath.Join(other, "m"), nil, 0o644)
	os.WriteFile(filepath.Join(top, "done"), nil, 0o644)
	u.waitFor(filepath.Join(top, "done"))

	if contains(u.seen, filepath.Join(top, "a", "x", "m")) {
		t.Errorf("a directory outside the root was watched through a symlink: %q", u.seen)
	}
}

// Unwatch while a worker is about to add a directory to the watch: the inotify descriptor must
// not be closed under it, else its number, reused by another inotify instance, gets the watch.
func TestUnwatchDoesNotCloseTheInotifyDescriptorUnderAnAdd(t *testing.T) {
	u := startUserWatch(t)
	u.mine(filepath.Join("top", "a"))
	u.waitFor(filepath.Join(u.top, "a"))
	u.f.watches.mu.Lock()
	inotifyFD := u.f.watches.byID["w"].fd
	u.f.watches.mu.Unlock()

	release := u.holdWorkers()
	u.mine(filepath.Join("top", "a", "x"))
	for queued := 0; queued == 0; { // the reader has the event: its add waits for a worker
		time.Sleep(5 * time.Millisecond)
		u.f.mu.Lock()
		queued = len(u.f.queued)
		u.f.mu.Unlock()
	}
	u.f.unwatch("w")
	for deadline := time.Now().Add(20 * time.Second); ; { // closed once nothing uses it
		if _, errno := fcntl(inotifyFD, syscall.F_GETFD, 0); errno == syscall.EBADF {
			break
		}
		if time.Now().After(deadline) {
			release()
			t.Fatal("the stopped watch's descriptor was never closed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Another inotify instance gets the number (as the next one made in the agent would).
	fresh, err := syscall.InotifyInit1(syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if fresh != inotifyFD {
		if err := syscall.Dup3(fresh, inotifyFD, syscall.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		syscall.Close(fresh)
	}
	other := inotifyFD
	defer syscall.Close(other)
	release()
	u.f.asUser(func() {}) // (queued after the add: done once the add is)
	u.f.asUser(func() {})
	wd, err := syscall.InotifyAddWatch(other, u.top, syscall.IN_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	if wd != 1 {
		t.Errorf("the stopped watch added a directory to another inotify instance (its next wd is %d, not 1)", wd)
	}
}

// userWatch is a recursive watch of base/top by a file server acting as user 1234. The agent is
// root of the host here (the test runs as root); base/top is the user's.
type userWatch struct {
	t      *testing.T
	f      *fileServer
	base   string
	top    string
	events chan *Event
	seen   []string
}

const watchUser = 1234

func startUserWatch(t *testing.T) *userWatch {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("run as root: the agent's file workers switch to another user (as in CI)")
	}
	u := &userWatch{t: t, base: t.TempDir(), events: make(chan *Event, 256)}
	for dir := u.base; dir != "/" && dir != os.TempDir(); dir = filepath.Dir(dir) {
		os.Chmod(dir, 0o755) // the user may reach what is below
	}
	u.top = u.mine("top")
	who := &acting{}
	who.set(&credentials{uid: watchUser, gid: watchUser, groups: []uint32{}})
	u.f = newFileServer(func(e *Event) { u.events <- e }, 2, who)
	u.f.queue(&Request{Id: "w", Watch: &Watch{Path: u.top, Recursive: true}})
	select {
	case e := <-u.events:
		if e.File == nil || e.File.Done == nil {
			t.Fatalf("watch not set up: %+v", e.File.Error)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the watch was never set up")
	}
	t.Cleanup(func() { u.f.unwatch("w") })
	return u
}

// mine makes base/rel (and its parents) as the user's.
func (u *userWatch) mine(rel string) string {
	path := filepath.Join(u.base, rel)
	for dir := path; dir != u.base; dir = filepath.Dir(dir) {
		defer os.Chown(dir, watchUser, watchUser)
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		u.t.Fatal(err)
	}
	return path
}

// waitFor waits for an event naming path; every path reported goes to seen.
func (u *userWatch) waitFor(path string) {
	u.t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-u.events:
			if e.File != nil && e.File.Error != nil {
				u.t.Fatalf("watch: %s", e.File.Error.Message)
			}
			if e.Watch == nil {
				continue
			}
			for _, ev := range e.Watch.Events {
				u.seen = append(u.seen, ev.Paths...)
			}
			if contains(u.seen, path) {
				return
			}
		case <-deadline:
			u.t.Fatalf("no event for %s; saw %q", path, u.seen)
		}
	}
}

// holdWorkers keeps both file workers busy until release is called: what the watch asks of
// them (adding a directory) waits meanwhile.
func (u *userWatch) holdWorkers() (release func()) {
	gate := make(chan struct{})
	for i := 0; i < 2; i++ {
		u.f.push(fileJob{fn: func() { <-gate }})
	}
	return func() { close(gate) }
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
