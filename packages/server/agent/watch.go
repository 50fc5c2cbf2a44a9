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
	// Only a directory. Added through /proc/self/fd/N (a directory opened following no symlink),
	// whose magic link must be followed.
	watchDirMask = watchMask | syscall.IN_ONLYDIR
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
	w := ws.byID[id]
	if w != nil {
		delete(ws.byID, id)
	} else if ws.pending[id] {
		ws.unwatched[id] = true // its watch is still queued or being set up
	}
	// else: a watch that failed (or never was): nothing to stop, nothing to remember
	ws.mu.Unlock()
	if w != nil {
		w.stop()
	}
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
	gaveUp := ws.unwatched[id] // the caller gave up while it was being set up
	if !gaveUp {
		ws.byID[id] = w
	}
	ws.mu.Unlock()
	if gaveUp {
		w.stop()
	}
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
//
// A directory is watched by the path it had when it was added, and a path goes stale when a
// directory is renamed: a directory moved away stops being watched (its events would be told
// under its old name, where anything may stand since). Every directory added after the start is
// reached from the root's descriptor one component at a time, following no symlink, so whatever
// the sandbox renames or swaps meanwhile, a watch never reaches outside its root.
type watch struct {
	id        string
	recursive bool
	root      string
	only      string // the watched file's name in root; "" for a directory watch
	// The root, open (O_PATH) for as long as the watch runs: where later adds start from.
	rootFD int
	// The inotify instance: fd while it is set up, then file's, used through inotify() (never
	// closed while in use).
	fd   int
	file *os.File
	conn syscall.RawConn
	dirs map[int32]string // watch descriptor → directory path
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
	if w.rootFD, err = syscall.Open(w.root, oPath|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0); err != nil {
		return nil, pathErr("open", w.root, err)
	}
	if w.fd, err = syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC); err != nil {
		syscall.Close(w.rootFD)
		return nil, inotifyError(path, err)
	}
	if err := w.add(w.fd, w.rootFD, w.root); err != nil {
		syscall.Close(w.fd)
		syscall.Close(w.rootFD)
		return nil, inotifyError(path, err)
	}
	if recursive && w.only == "" {
		w.addTree(w.fd, w.rootFD, w.root, nil)
	}
	w.file = os.NewFile(uintptr(w.fd), "inotify")
	if w.conn, err = w.file.SyscallConn(); err != nil {
		w.file.Close()
		syscall.Close(w.rootFD)
		return nil, err
	}
	return w, nil
}

// inotify runs fn with the inotify descriptor, which stays open until fn returns (stop's close
// waits for it, so the number cannot be another file's meanwhile). Not run once stopped.
func (w *watch) inotify(fn func(fd int)) {
	w.conn.Control(func(fd uintptr) { fn(int(fd)) })
}

// openDir opens the directory at path, the root or below it (O_PATH), from the root's
// descriptor one component at a time, following no symlink.
func (w *watch) openDir(path string) (int, error) {
	if !strings.HasPrefix(path, w.root) {
		return -1, syscall.EINVAL
	}
	rel := path[len(w.root):]
	if rel != "" && !strings.HasSuffix(w.root, "/") && !strings.HasPrefix(rel, "/") {
		return -1, syscall.EINVAL // a sibling that shares the root's name as a prefix
	}
	fd, err := syscall.Openat(w.rootFD, ".", oPath|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	for _, name := range strings.Split(rel, "/") {
		if name == "" {
			continue
		}
		if name == "." || name == ".." {
			syscall.Close(fd)
			return -1, syscall.EINVAL
		}
		next, err := syscall.Openat(fd, name, oPath|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		syscall.Close(fd)
		if err != nil {
			return -1, err // gone, not a directory (a symlink included), or not searchable
		}
		fd = next
	}
	return fd, nil
}

// add watches the directory open as dir, known as path (as the calling thread's user may: it
// needs read permission), through its descriptor: the very directory that was reached.
func (w *watch) add(inotifyFD, dir int, path string) error {
	wd, err := syscall.InotifyAddWatch(inotifyFD, fdPath(dir), watchDirMask)
	if err != nil {
		return err
	}
	w.dirs[int32(wd)] = path
	return nil
}

// addTree watches every directory below the one open as dir, known as top (top-down; a symlink
// is an entry like a file, neither watched nor entered, wherever it leads); the names found are
// added to created, when given (entries made before their directory was watched would otherwise
// go unreported). A directory the user may not list is left out, its entries unknown, as `ls -R`
// would. Each directory is reached from its parent's descriptor, never by its path.
func (w *watch) addTree(inotifyFD, dir int, top string, created *[]string) {
	// O_NONBLOCK: a FIFO can never be opened here (O_DIRECTORY), but nothing may hold the worker.
	fd, err := syscall.Openat(dir, ".", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return // not readable
	}
	syscall.SetNonblock(fd, false)
	list := os.NewFile(uintptr(fd), top)
	defer list.Close()
	names, err := list.Readdirnames(-1)
	if err != nil {
		return
	}
	var subdirs, files []string
	for _, name := range names {
		var st syscall.Stat_t
		if fstatat(fd, name, &st, atSymlinkNofollow) == nil && isDir(&st) {
			subdirs = append(subdirs, name)
		} else {
			files = append(files, joinPath(top, name))
		}
	}
	// Each directory is watched before it is listed: what is made in it meanwhile is reported.
	open := func(name string) int {
		sub, err := syscall.Openat(fd, name, oPath|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
		if err != nil {
			return -1 // gone already, or swapped for a symlink: left out
		}
		return sub
	}
	for _, name := range subdirs {
		sub := joinPath(top, name)
		if created != nil {
			*created = append(*created, sub)
		}
		if subFD := open(name); subFD >= 0 {
			w.add(inotifyFD, subFD, sub) // not readable: left out
			syscall.Close(subFD)
		}
	}
	if created != nil {
		*created = append(*created, files...)
	}
	for _, name := range subdirs {
		if subFD := open(name); subFD >= 0 {
			w.addTree(inotifyFD, subFD, joinPath(top, name), created)
			syscall.Close(subFD)
		}
	}
}

// forget stops watching the directory at path and every one below it: it was moved, and its
// events and later adds would go by a path that no longer leads to it. Moved within the
// watched tree, it is added again under its new path (its IN_MOVED_TO).
func (w *watch) forget(inotifyFD int, path string) {
	for wd, p := range w.dirs {
		if p == path || strings.HasPrefix(p, path+"/") {
			syscall.InotifyRmWatch(inotifyFD, uint32(wd))
			delete(w.dirs, wd)
		}
	}
}

// stop ends the watch: its reader sees the file closed. The close itself waits for a worker
// still adding to it (see inotify), on the closer's goroutine: the caller never waits.
func (w *watch) stop() { watchCloser <- w.file }

// watchCloser closes stopped watches' inotify descriptors one at a time. A close waits on the
// kernel (milliseconds), during which its goroutine holds a thread: one goroutine per stopped
// watch would take as many threads as watches stopped at once, and under a fork bomb that
// holds every pid of the sandbox the agent cannot start a thread it needs (the runtime aborts
// it). Buffered so that stopping never waits; a full buffer waits for the closer.
var watchCloser = func() chan<- *os.File {
	files := make(chan *os.File, 1024)
	go func() {
		for file := range files {
			file.Close()
		}
	}()
	return files
}()

func (w *watch) run(emit func(*Event)) {
	// Only this goroutine's decode uses the root's descriptor (through the workers it waits for).
	defer syscall.Close(w.rootFD)
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
			if w.recursive && parent != w.root && mask&syscall.IN_MOVE_SELF != 0 {
				w.inotify(func(fd int) { w.forget(fd, parent) }) // (unless its IN_MOVED_FROM came first)
			}
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
		if w.recursive && mask&syscall.IN_ISDIR != 0 && mask&syscall.IN_MOVED_FROM != 0 {
			w.inotify(func(fd int) { w.forget(fd, path) })
		}
		if w.recursive && mask&syscall.IN_ISDIR != 0 && mask&(syscall.IN_CREATE|syscall.IN_MOVED_TO) != 0 {
			var created []string
			w.asUser(func() {
				w.inotify(func(inotifyFD int) {
					dir, err := w.openDir(path)
					if err != nil {
						return // gone, or no longer a directory below the root
					}
					defer syscall.Close(dir)
					if w.add(inotifyFD, dir, path) == nil {
						w.addTree(inotifyFD, dir, path, &created)
					}
				})
			})
			for _, p := range created {
				out = append(out, event(WatchEventTypeCreate, p))
			}
		}
	}
	return out
}
