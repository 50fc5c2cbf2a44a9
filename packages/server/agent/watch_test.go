package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A recursive watch of a user's directory: what it adds after it started (a directory moved
// in) is watched and listed as the user, without capabilities, and never through a symlink.
// Here the agent is root of the host (the test runs as root), the user uid 1234: a root-only
// directory moved in is not listed (its entries' names would leak), and a symlink to a
// directory elsewhere is neither watched nor entered.
func TestRecursiveWatchAddsWhatItFindsAsTheUserAndFollowsNoSymlink(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run as root: the agent's file workers switch to another user (as in CI)")
	}
	const user = 1234
	base := t.TempDir()
	for dir := base; dir != "/" && dir != os.TempDir(); dir = filepath.Dir(dir) {
		os.Chmod(dir, 0o755) // the user may reach what is below
	}
	mine := func(path string) string {
		if err := os.MkdirAll(path, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, user, user); err != nil {
			t.Fatal(err)
		}
		return path
	}
	top := mine(filepath.Join(base, "w"))
	outside := mine(filepath.Join(base, "outside"))
	box := mine(filepath.Join(base, "stage", "box"))
	vault := filepath.Join(box, "vault")
	if err := os.Mkdir(vault, 0o700); err != nil { // root's
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(vault, "secret"), nil, 0o600)
	if err := os.Symlink(outside, filepath.Join(box, "link")); err != nil {
		t.Fatal(err)
	}

	events := make(chan *Event, 64)
	who := &acting{}
	who.set(&credentials{uid: user, gid: user, groups: []uint32{}})
	f := newFileServer(func(e *Event) { events <- e }, 2, who)
	var seen []string
	waitFor := func(path string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case e := <-events:
				if e.File != nil && e.File.Error != nil {
					t.Fatalf("watch: %s", e.File.Error.Message)
				}
				if e.Watch == nil {
					continue
				}
				for _, ev := range e.Watch.Events {
					seen = append(seen, ev.Paths...)
				}
				for _, p := range seen {
					if p == path {
						return
					}
				}
			case <-deadline:
				t.Fatalf("no event for %s; saw %q", path, seen)
			}
		}
	}
	f.queue(&Request{Id: "w", Watch: &Watch{Path: top, Recursive: true}})
	select {
	case e := <-events:
		if e.File == nil || e.File.Done == nil {
			t.Fatalf("watch not set up: %+v", e.File)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the watch was never set up")
	}
	defer f.unwatch("w")

	// Moved in whole: the watch lists it (as the user) and watches its directories.
	if err := os.Rename(box, filepath.Join(top, "box")); err != nil {
		t.Fatal(err)
	}
	waitFor(filepath.Join(top, "box", "link"))
	// A change where the symlink leads, then a marker: the marker's event comes after any
	// event of the symlink's target (one inotify queue), were it watched.
	os.WriteFile(filepath.Join(outside, "y"), nil, 0o644)
	os.WriteFile(filepath.Join(top, "done"), nil, 0o644)
	waitFor(filepath.Join(top, "done"))

	for _, p := range seen {
		if strings.Contains(p, "secret") {
			t.Errorf("an entry of a directory the user may not list was reported: %s", p)
		}
		if strings.HasPrefix(p, filepath.Join(top, "box", "link")+"/") {
			t.Errorf("a symlink was followed: %s", p)
		}
	}
	if !contains(seen, filepath.Join(top, "box", "vault")) {
		t.Errorf("the root-only directory's own name (the user may see it) was not reported: %q", seen)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
