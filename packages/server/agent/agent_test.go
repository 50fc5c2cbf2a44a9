package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"unsafe"
)

func TestPathsFollowPythonOsPath(t *testing.T) {
	for _, c := range []struct{ path, dir, base string }{
		{"/a/b", "/a", "b"},
		{"/a", "/", "a"},
		{"/", "/", ""},
		{"/a/", "/a", ""},
		{"a", "", "a"},
		{"//a//b", "//a", "b"},
	} {
		if got := dirName(c.path); got != c.dir {
			t.Errorf("dirName(%q) = %q, want %q", c.path, got, c.dir)
		}
		if got := baseName(c.path); got != c.base {
			t.Errorf("baseName(%q) = %q, want %q", c.path, got, c.base)
		}
	}
	for _, c := range []struct{ dir, name, want string }{
		{"/", "x", "/x"},
		{"/a", "x", "/a/x"},
		{"/a/", "x", "/a/x"},
		{"/a", "/b", "/b"},
		{"", "x", "x"},
		{"/a/../b", "x", "/a/../b/x"},
	} {
		if got := joinPath(c.dir, c.name); got != c.want {
			t.Errorf("joinPath(%q, %q) = %q, want %q", c.dir, c.name, got, c.want)
		}
	}
	if got := uploadTemp("/d/f.txt", "ab12"); got != "/d/.f.txt.sbx-upload-ab12" {
		t.Errorf("uploadTemp = %q", got)
	}
}

func TestStrerrorIsTheCLibrarys(t *testing.T) {
	if got := strerror(syscall.ENOENT); got != "No such file or directory" {
		t.Errorf("strerror(ENOENT) = %q", got)
	}
	if got := strerror(syscall.EACCES); got != "Permission denied" {
		t.Errorf("strerror(EACCES) = %q", got)
	}
}

func TestLookPathFindsWhatExecvpeWould(t *testing.T) {
	dir := t.TempDir()
	bin, plain := filepath.Join(dir, "bin"), filepath.Join(dir, "plain")
	os.Mkdir(bin, 0o755)
	os.Mkdir(plain, 0o755)
	os.WriteFile(filepath.Join(bin, "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(plain, "tool"), []byte("data"), 0o644)
	os.Mkdir(filepath.Join(plain, "dir"), 0o755)
	check := func(file, path string, wantPath string, wantErr syscall.Errno) {
		t.Helper()
		got, errno := lookPath(file, map[string]string{"PATH": path}, dir)
		if got != wantPath || errno != wantErr {
			t.Errorf("lookPath(%q, PATH=%q) = %q, %v; want %q, %v", file, path, got, errno, wantPath, wantErr)
		}
	}
	check("tool", plain+":"+bin, filepath.Join(bin, "tool"), 0)
	check("tool", "bin", "bin/tool", 0) // relative to the process's working directory
	check("tool", plain, "", syscall.EACCES)
	check("dir", plain, "", syscall.EACCES)
	check("missing", plain+":"+bin, "", syscall.ENOENT)
	check("./anything", "", "./anything", 0)
	if _, errno := lookPath("sh", map[string]string{}, "/"); errno != 0 {
		t.Errorf("without PATH, %s is searched: %v", defaultPath, errno)
	}
}

func TestMakeParentsTellsAFileFromAParentThatIsOne(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if err := makeParents(filepath.Join(dir, "a/b/c")); err != nil {
		t.Fatal(err)
	}
	if err := makeParents(filepath.Join(dir, "a/b/c")); err != nil {
		t.Errorf("an existing directory is fine: %v", err)
	}
	if answer := fileError(makeParents(file), file); answer.Kind != FileErrorKindAlreadyExists {
		t.Errorf("over a file: %+v", answer)
	}
	if answer := fileError(makeParents(filepath.Join(file, "x")), file); answer.Kind != FileErrorKindNotADirectory {
		t.Errorf("under a file: %+v", answer)
	}
}

func TestRemoveTreeRemovesEverythingAndFollowsNoSymlink(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(outside, "keep"), nil, 0o644)
	os.MkdirAll(filepath.Join(dir, "t/a/b"), 0o755)
	os.WriteFile(filepath.Join(dir, "t/a/b/f"), nil, 0o644)
	os.Symlink(outside, filepath.Join(dir, "t/link"))
	if err := removePath(filepath.Join(dir, "t"), true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "t")); !os.IsNotExist(err) {
		t.Errorf("the tree is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("a file behind a symlink was removed: %v", err)
	}
}

// inotifyEvents packs events as the kernel reports them.
func inotifyEvents(events ...syscall.InotifyEvent) []byte {
	var out []byte
	for _, e := range events {
		header := (*[syscall.SizeofInotifyEvent]byte)(unsafe.Pointer(&e))
		out = append(out, header[:]...)
	}
	return out
}

func named(wd int32, mask, cookie uint32, name string) []byte {
	padded := make([]byte, (len(name)/16+1)*16)
	copy(padded, name)
	event := syscall.InotifyEvent{Wd: wd, Mask: mask, Cookie: cookie, Len: uint32(len(padded))}
	return append(inotifyEvents(event), padded...)
}

func describeEvents(events []*WatchEvent) []string {
	var out []string
	for _, e := range events {
		line := watchEventTypeNames[e.Type]
		for _, p := range e.Paths {
			line += " " + p
		}
		out = append(out, line)
	}
	return out
}

func TestWatchDecodeReportsEachChangeOnce(t *testing.T) {
	w := &watch{root: "/w", dirs: map[int32]string{1: "/w"}, uploadMoves: map[uint32]bool{}}
	var data []byte
	for _, part := range [][]byte{
		named(1, syscall.IN_CREATE, 0, "a"),
		named(1, syscall.IN_MODIFY, 0, "a"),
		named(1, syscall.IN_MODIFY, 0, "a"),
		named(1, syscall.IN_MOVED_FROM, 7, "a"),
		named(1, syscall.IN_MOVED_TO, 7, "b"),
		named(1, syscall.IN_CREATE, 0, ".c.sbx-upload-1f"),
		named(1, syscall.IN_MOVED_FROM, 9, ".c.sbx-upload-1f"),
		named(1, syscall.IN_MOVED_TO, 9, "c"),
		named(1, syscall.IN_DELETE, 0, "b"),
		named(2, syscall.IN_CREATE, 0, "unknown-wd"),
		inotifyEvents(syscall.InotifyEvent{Wd: -1, Mask: syscall.IN_Q_OVERFLOW}),
		inotifyEvents(syscall.InotifyEvent{Wd: 1, Mask: syscall.IN_DELETE_SELF}),
	} {
		data = append(data, part...)
	}
	want := []string{
		"WATCH_EVENT_TYPE_CREATE /w/a",
		"WATCH_EVENT_TYPE_MODIFY /w/a",
		"WATCH_EVENT_TYPE_RENAME /w/a /w/b",
		"WATCH_EVENT_TYPE_CREATE /w/c",
		"WATCH_EVENT_TYPE_DELETE /w/b",
		"WATCH_EVENT_TYPE_OVERFLOW",
		"WATCH_EVENT_TYPE_DELETE /w",
	}
	if got := describeEvents(w.decode(data)); !reflect.DeepEqual(got, want) {
		t.Errorf("decode = %q\nwant %q", got, want)
	}
}

func TestWatchOfAFileSeesOnlyThatFile(t *testing.T) {
	w := &watch{root: "/d", only: "f", dirs: map[int32]string{1: "/d"}, uploadMoves: map[uint32]bool{}}
	var data []byte
	for _, part := range [][]byte{
		named(1, syscall.IN_CREATE, 0, "other"),
		named(1, syscall.IN_MODIFY, 0, "f"),
		named(1, syscall.IN_MOVED_FROM, 3, ".f.sbx-upload-9"),
		// The two halves of a rename may come in different reads.
	} {
		data = append(data, part...)
	}
	if got := describeEvents(w.decode(data)); !reflect.DeepEqual(got, []string{"WATCH_EVENT_TYPE_MODIFY /d/f"}) {
		t.Errorf("first read: %q", got)
	}
	if got := describeEvents(w.decode(named(1, syscall.IN_MOVED_TO, 3, "f"))); !reflect.DeepEqual(got, []string{"WATCH_EVENT_TYPE_CREATE /d/f"}) {
		t.Errorf("second read: %q", got)
	}
}

func TestEventsAreProto3JSON(t *testing.T) {
	zero := int32(0)
	for _, c := range []struct {
		event *Event
		want  string
	}{
		{&Event{Id: "1", Exited: &Exited{Code: &zero}}, `{"id":"1","exited":{"code":0}}`},
		{&Event{Ready: &Ready{}}, `{"ready":{}}`},
		{
			&Event{Id: "c", File: &FileAnswer{Opened: &OpenedFile{Fd: 5, Size: 1 << 60, Dev: 1<<64 - 1}}},
			`{"id":"c","file":{"opened":{"fd":5,"size":"1152921504606846976","dev":"18446744073709551615"}}}`,
		},
		{
			&Event{File: &FileAnswer{Error: &FileError{Kind: FileErrorKindNotFound, Message: "m"}}},
			`{"file":{"error":{"kind":"FILE_ERROR_KIND_NOT_FOUND","message":"m"}}}`,
		},
	} {
		got, err := json.Marshal(c.event)
		if err != nil || string(got) != c.want {
			t.Errorf("json.Marshal = %s, %v; want %s", got, err, c.want)
		}
	}
	var req Request
	line := `{"id":"7","exec":{"argv":["ls"],"env":{"A":"b"},"mergeStderr":true,"pty":{"rows":3}}}`
	if err := json.Unmarshal([]byte(line), &req); err != nil || req.Exec == nil || req.Exec.Pty.Rows != 3 || !req.Exec.MergeStderr {
		t.Errorf("json.Unmarshal(%s) = %+v, %v", line, req.Exec, err)
	}
	var kind FileType
	if err := json.Unmarshal([]byte(`"FILE_TYPE_NOPE"`), &kind); err == nil {
		t.Errorf("an unknown enum name is refused")
	}
}
