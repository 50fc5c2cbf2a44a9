package main

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

const (
	watchMask = syscall.IN_MODIFY | syscall.IN_ATTRIB | syscall.IN_MOVED_FROM | syscall.IN_MOVED_TO |
		syscall.IN_CREATE | syscall.IN_DELETE | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF
	// Only a directory, never through a symlink (a name swapped for one after it was seen).
	watchDirMask = watchMask | syscall.IN_ONLYDIR | syscall.IN_DONT_FOLLOW
	uploadMark   = ".sbx-upload-"
	// Rename cookies of uploads moving into place remembered at most (see watch.uploadMoves).
	maxUploadMoves = 1024
)

// watches are the agent's inotify watches, by watch id. A watch is set up by a file worker and
// then read by a goroutine on the runtime's poller (no thread of its own). Whatever a watch
// does to the file system (add watches, list directories) it does as the user, without
// capabilities, as every file call: on a file worker (asUser), never on the reading
// goroutine's thread, which carries the agent's own credentials.
type watches struct {
	emit   func(*Event)
	asUser func(func())
	mu     sync.Mutex
	byID   map[string]*watch
	// Ids of watches queued or being set up: only these can be unwatched early.
	pending map[string]bool
	// Pending ids whose Unwatch came before their watch was in place.
	unwatched map[string]bool
}

func (ws *watches) init(emit func(*Event), asUser func(func())) {
	ws.emit = emit
	ws.asUser = asUser
	ws.byID = map[string]*watch{}
	ws.pending = map[string]bool{}
	ws.unwatched = map[string]bool{}
}

func (ws *watches) queued(id string) {
	ws.mu.Lock()
	ws.pending[id] = true
	ws.mu.Unlock()
}

func (ws *watches) unwatch(id string) {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	if w := ws.byID[id]; w != nil {
		delete(ws.byID, id)
		w.stop()
	} else if ws.pending[id] {
		ws.unwatched[id] = true // its watch is still queued or being set up
	}
	// else: a watch that failed (or never was): nothing to stop, nothing to remember
}

// start sets up a watch; once it returns without error, every change is reported.
func (ws *watches) start(id, path string, recursive bool) error {
	defer func() { // in place or failed: no longer pending either way
		ws.mu.Lock()
		delete(ws.pending, id)
		delete(ws.unwatched, id)
		ws.mu.Unlock()
	}()
	w, err := newWatch(id, path, recursive, ws.asUser)
	if err != nil {
		return err
	}
	ws.mu.Lock()
	if ws.unwatched[id] { // the caller gave up while it was being set up
		w.stop()
	} else {
		ws.byID[id] = w
	}
	ws.mu.Unlock()
	go func() {
		w.run(ws.emit)
		ws.mu.Lock()
		if ws.byID[id] == w {
			delete(ws.byID, id)
		}
		ws.mu.Unlock()
	}()
	return nil
}

// watch is one inotify instance: a directory (with recursive, every directory below it) or one
// file (watched through its parent, so a file replaced by rename stays watched).
type watch struct {
	id        string
	recursive bool
	root      string
	only      string // the watched file's name in root; "" for a directory watch
	fd        int
	file      *os.File
	dirs      map[int32]string // watch descriptor → directory path
	// Rename cookies of uploads moving into place; kept across reads, since the two halves of
	// a rename can arrive in different ones.
	uploadMoves map[uint32]bool
	// Runs a function as the user (on a file worker) and waits for it: how the reading
	// goroutine watches and lists directories created after the watch started.
	asUser func(func())
}

// inotifyError names the machine's limits for the errors that mean they are reached: they are
// per host user, which every sandbox's agent shares with nothing but its own sandbox.
func inotifyError(path string, err error) error {
	if errno := errnoOf(err); errno == syscall.EMFILE || errno == syscall.ENOSPC {
		return &fsError{FileErrorKindUnspecified, path + ": the machine's inotify limit is reached " +
			"(fs.inotify.max_user_instances / max_user_watches)"}
	}
	return err
}

// newWatch sets up a watch; it runs on a file worker (as the user).
func newWatch(id, path string, recursive bool, asUser func(func())) (*watch, error) {
	root, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, err
	}
	st, err := stat(root)
	if err != nil {
		return nil, err
	}
	w := &watch{id: id, recursive: recursive, root: root, dirs: map[int32]string{}, uploadMoves: map[uint32]bool{}, asUser: asUser}
	if !isDir(st) {
		w.only = baseName(root)
		if w.root = dirName(root); w.root == "" {
			w.root = "/"
		}
	}
	if w.fd, err = syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC); err != nil {
		return nil, inotifyError(path, err)
	}
	if err := w.add(w.root); err != nil {
		syscall.Close(w.fd)
		return nil, inotifyError(path, err)
	}
	if recursive && w.only == "" {
		w.addTree(w.root, nil)
	}
	w.file = os.NewFile(uintptr(w.fd), "inotify")
	return w, nil
}

// add watches one directory (as the calling thread's user may: it needs read permission).
func (w *watch) add(path string) error {
	wd, err := syscall.InotifyAddWatch(w.fd, path, watchDirMask)
	if err != nil {
		return err
	}
	w.dirs[int32(wd)] = path
	return nil
}

// addTree watches every directory below top (top-down; a symlink is an entry like a file,
// neither watched nor entered, wherever it leads); the names found are added to created, when
// given (entries made before their directory was watched would otherwise go unreported). A
// directory the user may not list is left out, its entries unknown, as `ls -R` would.
func (w *watch) addTree(top string, created *[]string) {
	fd, err := syscall.Open(top, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return // gone already, or not readable
	}
	syscall.SetNonblock(fd, false)
	dir := os.NewFile(uintptr(fd), top)
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return
	}
	var subdirs, files []string
	for _, name := range names {
		entry := joinPath(top, name)
		if st, err := lstat(entry); err == nil && isDir(st) {
			subdirs = append(subdirs, entry)
		} else {
			files = append(files, entry)
		}
	}
	for _, sub := range subdirs {
		if created != nil {
			*created = append(*created, sub)
		}
		w.add(sub) // gone already, or not readable: left out
	}
	if created != nil {
		*created = append(*created, files...)
	}
	for _, sub := range subdirs {
		w.addTree(sub, created) // O_NOFOLLOW: a directory swapped for a symlink meanwhile is not entered
	}
}

// stop ends the watch: its reader sees the file closed.
func (w *watch) stop() { w.file.Close() }

func (w *watch) run(emit func(*Event)) {
	buf := make([]byte, 1<<16)
	for {
		n, err := w.file.Read(buf)
		if err != nil {
			w.file.Close()
			return
		}
		if events := w.decode(buf[:n]); len(events) > 0 {
			emit(&Event{Id: w.id, Watch: &WatchEvents{Events: events}})
		}
	}
}

// uploadTarget is the file an upload's temporary name (".name.sbx-upload-<id>") stands for.
func uploadTarget(name string) (string, bool) {
	at := strings.Index(name, uploadMark)
	if strings.HasPrefix(name, ".") && at > 1 {
		return name[1:at], true
	}
	return "", false
}

func event(kind WatchEventType, paths ...string) *WatchEvent {
	if paths == nil {
		paths = []string{}
	}
	return &WatchEvent{Type: kind, Paths: paths}
}

// decode turns one read of inotify events into the watch's events.
func (w *watch) decode(data []byte) []*WatchEvent {
	var out []*WatchEvent
	moves := map[uint32]int{} // rename cookie → index in out of its "from" half, this read
	for at := 0; at+syscall.SizeofInotifyEvent <= len(data); {
		raw := (*syscall.InotifyEvent)(unsafe.Pointer(&data[at]))
		mask, cookie := raw.Mask, raw.Cookie
		end := at + syscall.SizeofInotifyEvent + int(raw.Len)
		if end > len(data) {
			break
		}
		name := strings.TrimRight(string(data[at+syscall.SizeofInotifyEvent:end]), "\x00")
		wd := raw.Wd
		at = end
		if mask&syscall.IN_Q_OVERFLOW != 0 {
			out = append(out, event(WatchEventTypeOverflow))
			continue
		}
		parent, known := w.dirs[wd]
		if mask&syscall.IN_IGNORED != 0 {
			delete(w.dirs, wd)
			continue
		}
		if !known {
			continue
		}
		if name == "" { // the watched directory itself
			if parent == w.root && w.only == "" && mask&(syscall.IN_DELETE_SELF|syscall.IN_MOVE_SELF) != 0 {
				kind := WatchEventTypeRename
				if mask&syscall.IN_DELETE_SELF != 0 {
					kind = WatchEventTypeDelete
				}
				out = append(out, event(kind, parent))
			}
			continue
		}
		target, isUpload := uploadTarget(name)
		if w.only != "" && name != w.only && !(isUpload && target == w.only) {
			continue
		}
		path := joinPath(parent, name)
		if isUpload {
			// An upload: its temporary file is not news; its rename into place is a create.
			if mask&syscall.IN_MOVED_FROM != 0 {
				if len(w.uploadMoves) > maxUploadMoves {
					w.uploadMoves = map[uint32]bool{}
				}
				w.uploadMoves[cookie] = true
			}
			continue
		}
		switch {
		case mask&syscall.IN_CREATE != 0:
			out = append(out, event(WatchEventTypeCreate, path))
		case mask&(syscall.IN_MODIFY|syscall.IN_ATTRIB) != 0:
			if last := len(out) - 1; last < 0 || out[last].Type != WatchEventTypeModify ||
				len(out[last].Paths) != 1 || out[last].Paths[0] != path {
				out = append(out, event(WatchEventTypeModify, path))
			}
		case mask&syscall.IN_DELETE != 0:
			out = append(out, event(WatchEventTypeDelete, path))
		case mask&syscall.IN_MOVED_FROM != 0:
			moves[cookie] = len(out)
			out = append(out, event(WatchEventTypeRename, path))
		case mask&syscall.IN_MOVED_TO != 0:
			index, paired := moves[cookie]
			delete(moves, cookie)
			if w.uploadMoves[cookie] {
				delete(w.uploadMoves, cookie)
				out = append(out, event(WatchEventTypeCreate, path))
			} else if paired {
				out[index].Paths = append(out[index].Paths, path)
			} else {
				out = append(out, event(WatchEventTypeRename, path))
			}
		}
		if w.recursive && mask&syscall.IN_ISDIR != 0 && mask&(syscall.IN_CREATE|syscall.IN_MOVED_TO) != 0 {
			var created []string
			w.asUser(func() {
				if w.add(path) == nil {
					w.addTree(path, &created)
				}
			})
			for _, p := range created {
				out = append(out, event(WatchEventTypeCreate, p))
			}
		}
	}
	return out
}
