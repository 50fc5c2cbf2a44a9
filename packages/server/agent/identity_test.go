package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
# a comment
app:x:1234:1234::/home/app:/bin/sh
broken:x:notanumber:5::/nowhere:/bin/sh
svc:x:70000:70000::/srv:/bin/false
nohome:x:2000:2000
relhome:x:2001:2001::home/rel:/bin/sh
app:x:9999:9999::/second:/bin/sh
`

const testGroup = `root:x:0:
app:x:1234:
staff:x:50:app,other
wheel:x:10:root
big:x:80000:app
bad:x:x:app
`

func TestResolveUserAsRuncDoes(t *testing.T) {
	for _, c := range []struct {
		spec string
		want credentials
	}{
		{"", credentials{uid: 0, gid: 0, groups: []uint32{10}, home: "/root"}},
		{"root", credentials{uid: 0, gid: 0, groups: []uint32{10}, home: "/root"}},
		{"0", credentials{uid: 0, gid: 0, groups: []uint32{10}, home: "/root"}},
		// The first matching line wins; groups that list the user (an id out of range is left out).
		{"app", credentials{uid: 1234, gid: 1234, groups: []uint32{50}, home: "/home/app"}},
		{"1234", credentials{uid: 1234, gid: 1234, groups: []uint32{50}, home: "/home/app"}},
		// An explicit group replaces the primary one and the memberships.
		{"app:staff", credentials{uid: 1234, gid: 50, groups: []uint32{}, home: "/home/app"}},
		{"app:77", credentials{uid: 1234, gid: 77, groups: []uint32{}, home: "/home/app"}},
		// A number not in passwd is taken as it is (gid 0, home /).
		{"4321", credentials{uid: 4321, gid: 0, groups: []uint32{}, home: "/"}},
		{"4321:4321", credentials{uid: 4321, gid: 4321, groups: []uint32{}, home: "/"}},
		{"nohome", credentials{uid: 2000, gid: 2000, groups: []uint32{}, home: "/"}},
		{"relhome", credentials{uid: 2001, gid: 2001, groups: []uint32{}, home: "/"}},
	} {
		got, err := resolveUser(c.spec, []byte(testPasswd), []byte(testGroup))
		if err != nil {
			t.Errorf("resolveUser(%q): %v", c.spec, err)
			continue
		}
		if !reflect.DeepEqual(*got, c.want) {
			t.Errorf("resolveUser(%q) = %+v, want %+v", c.spec, *got, c.want)
		}
	}
}

func TestResolveUserRefusesWhatCannotBe(t *testing.T) {
	for spec, want := range map[string]string{
		"nobody-here": "unable to find user nobody-here",
		"app:nogroup": "unable to find group nogroup",
		// A malformed line is never read as root.
		"broken":    "unable to find user broken",
		"svc":       "uid 70000 is outside",
		"70000":     "uid 70000 is outside",
		"app:80000": "gid 80000 is outside",
		"app:":      "empty group",
		"-1":        "unable to find user -1",
	} {
		_, err := resolveUser(spec, []byte(testPasswd), []byte(testGroup))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("resolveUser(%q) = %v, want an error with %q", spec, err, want)
		}
	}
	// No passwd or group at all (a distroless image): numbers only.
	got, err := resolveUser("65532:65532", nil, nil)
	if err != nil || got.uid != 65532 || got.gid != 65532 || got.home != "/" {
		t.Errorf("resolveUser without account files = %+v, %v", got, err)
	}
	if _, err := resolveUser("app", nil, nil); err == nil {
		t.Error("a name without passwd must fail")
	}
}

func TestAccountFilesAreReadWithBounds(t *testing.T) {
	dir := t.TempDir()
	if data, err := readAccountFile(filepath.Join(dir, "missing")); err != nil || data != nil {
		t.Errorf("a missing file reads as empty: %q, %v", data, err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, maxAccountFile+1), 0o644)
	if _, err := readAccountFile(big); err == nil {
		t.Error("an oversized file must be refused")
	}
	if _, err := readAccountFile(dir); err == nil {
		t.Error("a directory must be refused")
	}
	if _, err := readAccountFile("/dev/zero"); err == nil {
		t.Error("a device must be refused")
	}
	small := filepath.Join(dir, "passwd")
	os.WriteFile(small, []byte(testPasswd), 0o644)
	if data, err := readAccountFile(small); err != nil || string(data) != testPasswd {
		t.Errorf("readAccountFile = %q, %v", data, err)
	}
}

func TestMountRootArgs(t *testing.T) {
	a, err := parseMountRootArgs([]string{"--target", "/t", "--upper-disk", "/d", "--id-from", "1900000000",
		"--id-to", "2147483648", "--lower", "/m", "--lower-idmapped", "/l1", "--lower-idmapped", "/l2"})
	if err != nil {
		t.Fatal(err)
	}
	want := []lowerDir{{"/m", false}, {"/l1", true}, {"/l2", true}}
	if !reflect.DeepEqual(a.lowers, want) || a.idFrom != 1900000000 || a.idTo != 2147483648 {
		t.Errorf("parsed %+v", a)
	}
	for _, bad := range [][]string{
		{"--target", "/t", "--upper-disk", "/d", "--id-from", "1", "--id-to", "2"},                                            // no lower
		{"--target", "/t", "--upper-disk", "/d", "--id-from", "1", "--id-to", "4294967295", "--lower", "/l"},                  // past the last id
		{"--target", "/t", "--upper-disk", "/d", "--id-from", "0", "--id-to", "2", "--lower", "/l"},                           // id 0
		{"--target", "t", "--upper-disk", "/d", "--id-from", "1", "--id-to", "2", "--lower", "/l"},                            // relative
		{"--target", "/t", "--upper-disk", "/d", "--id-from", "1", "--id-to", "2", "--lower", "/l", "--lower-idmapped", "/l"}, // twice
		{"--target", "/t", "--upper-disk", "/d", "--id-from", "1", "--id-to", "2", "--lower", "/l", "--what", "x"},            // unknown
		{"--target"},
	} {
		if _, err := parseMountRootArgs(bad); err == nil {
			t.Errorf("parseMountRootArgs(%q) must fail", bad)
		}
	}
}

func TestMakeWorkdirGivesWhatItMakesToRootAsDockerDoes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run as root: the directories made are chowned to 0:0 (as in CI)")
	}
	top := t.TempDir()
	// A parent of the user's, set-group-id: what is made below it is still root's.
	if err := os.Chown(top, 1234, 1234); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(top, 0o2775); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(top, "srv", "app")
	if err := makeWorkdir(dir); err != nil {
		t.Fatal(err)
	}
	for _, made := range []string{filepath.Join(top, "srv"), dir} {
		var st syscall.Stat_t
		if err := syscall.Lstat(made, &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != 0 || st.Gid != 0 || !isDir(&st) {
			t.Errorf("%s: owner %d:%d, want a directory of 0:0", made, st.Uid, st.Gid)
		}
	}
	var st syscall.Stat_t
	syscall.Lstat(top, &st)
	if st.Uid != 1234 {
		t.Errorf("an existing parent was changed: owner %d", st.Uid)
	}
	if err := makeWorkdir(filepath.Join(top, "srv", "app")); err != nil {
		t.Errorf("an existing working directory: %v", err)
	}
	os.WriteFile(filepath.Join(top, "file"), nil, 0o644)
	if err := makeWorkdir(filepath.Join(top, "file", "below")); err == nil {
		t.Error("a working directory below a file was made")
	}
}
