package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"unsafe"
)

// fileServer answers the server's file calls. They run on a few workers started with the first
// call (an idle sandbox that is never asked for a file holds no thread for them), as the
// sandbox user without capabilities (permission bits apply, root's too), inside the sandbox's
// root: paths, `..` and symlinks resolve there, so no path can reach the host. File contents never pass through the agent: for Read and Upload it opens
// the file and names the descriptor, and the server reopens that open file through
// /proc/<agent>/fd/<n> (the same file, whatever happens to its path later) and checks it.
type fileServer struct {
	emit func(*Event)
	// Whom the calls act as: each worker's thread takes on the user's ids (see identity.go).
	identity *acting

	workers int
	started sync.Once
	mu      sync.Mutex
	waiting *sync.Cond
	queued  []fileJob

	openMu    sync.Mutex
	openFiles map[int]bool   // descriptors opened by Read, until Release
	uploads   map[string]int // upload token → descriptor of its temporary file

	watches watches
}

// fileJob is a file call of the server's, or work of the agent's own that must act as the
// user (fn: a recursive watch's directories found after it started).
type fileJob struct {
	req *Request
	fn  func()
}

func newFileServer(emit func(*Event), workers int, identity *acting) *fileServer {
	f := &fileServer{emit: emit, identity: identity, workers: workers, openFiles: map[int]bool{}, uploads: map[string]int{}}
	f.waiting = sync.NewCond(&f.mu)
	f.watches.init(emit, f.asUser)
	return f
}

// queue hands a file call to the workers (unbounded: the control FIFO is never held up).
func (f *fileServer) queue(req *Request) {
	if req.Watch != nil {
		f.watches.queued(req.Id)
	}
	f.push(fileJob{req: req})
}

func (f *fileServer) push(job fileJob) {
	f.started.Do(func() {
		for i := 0; i < f.workers; i++ {
			go f.work()
		}
	})
	f.mu.Lock()
	f.queued = append(f.queued, job)
	f.mu.Unlock()
	f.waiting.Signal()
}

// asUser runs fn on a file worker, as the sandbox user without capabilities, and waits for it.
func (f *fileServer) asUser(fn func()) {
	done := make(chan struct{})
	f.push(fileJob{fn: func() {
		defer close(done)
		fn()
	}})
	<-done
}

func (f *fileServer) unwatch(id string) { f.watches.unwatch(id) }

func (f *fileServer) work() {
	// Never unlocked: this thread carries the sandbox user's ids once it is configured, and
	// acts without capabilities; no other goroutine may run on it (it dies with the agent).
	runtime.LockOSThread()
	if err := actAs(nil, false); err != nil {
		fatal("cannot drop a file worker's capabilities: %v", err)
	}
	var applied uint64
	for {
		f.mu.Lock()
		for len(f.queued) == 0 {
			f.waiting.Wait()
		}
		job := f.queued[0]
		f.queued[0] = fileJob{}
		f.queued = f.queued[1:]
		f.mu.Unlock()
		if creds, generation := f.identity.current(); generation != applied {
			if err := actAs(creds, false); err != nil {
				fatal("cannot act as the sandbox user: %v", err)
			}
			applied = generation
		}
		if job.fn != nil {
			job.fn()
			continue
		}
		f.emit(&Event{Id: job.req.Id, File: f.serve(job.req)})
	}
}

// fsError is a failure with its kind and message decided by the agent.
type fsError struct {
	kind    FileErrorKind
	message string
}

func (e *fsError) Error() string { return e.message }

var errnoKinds = map[syscall.Errno]FileErrorKind{
	syscall.ENOENT:    FileErrorKindNotFound,
	syscall.EISDIR:    FileErrorKindIsADirectory,
	syscall.ENOTDIR:   FileErrorKindNotADirectory,
	syscall.ENOTEMPTY: FileErrorKindDirectoryNotEmpty,
	syscall.EEXIST:    FileErrorKindAlreadyExists,
	syscall.EACCES:    FileErrorKindPermissionDenied,
	syscall.EPERM:     FileErrorKindPermissionDenied,
	syscall.EROFS:     FileErrorKindPermissionDenied,
	syscall.ENOSPC:    FileErrorKindNoSpace,
	syscall.EDQUOT:    FileErrorKindNoSpace,
}

// fileError is the answer for a failed call on path: "path: Reason", of the errno's kind.
func fileError(err error, path string) *FileError {
	var fe *fsError
	if errors.As(err, &fe) {
		return &FileError{Kind: fe.kind, Message: fe.message}
	}
	if errno := errnoOf(err); errno != 0 {
		return &FileError{Kind: errnoKinds[errno], Message: path + ": " + strerror(errno)}
	}
	return &FileError{Kind: FileErrorKindUnspecified, Message: path + ": " + err.Error()}
}

func (f *fileServer) serve(req *Request) *FileAnswer {
	var path string
	var answer *FileAnswer
	var err error
	done := &FileAnswer{Done: &Done{}}
	switch {
	case req.Stat != nil:
		path = req.Stat.Path
		var info *FileInfo
		if info, err = statPath(path); err == nil {
			answer = &FileAnswer{Info: info}
		}
	case req.List != nil:
		path = req.List.Path
		var entries []*FileInfo
		if entries, err = listDirectory(path); err == nil {
			answer = &FileAnswer{List: &FileList{Entries: entries}}
		}
	case req.Mkdir != nil:
		path = req.Mkdir.Path
		if req.Mkdir.Parents {
			err = makeParents(path)
		} else {
			err = pathErr("mkdir", path, syscall.Mkdir(path, 0o777))
		}
		answer = done
	case req.Remove != nil:
		path = req.Remove.Path
		err = removePath(path, req.Remove.Recursive)
		answer = done
	case req.Read != nil:
		path = req.Read.Path
		var opened *OpenedFile
		if opened, err = f.read(path); err == nil {
			answer = &FileAnswer{Opened: opened}
		}
	case req.Release != nil:
		f.release(int(req.Release.Fd))
		answer = done
	case req.Upload != nil:
		path = req.Upload.Path
		var opened *OpenedFile
		if opened, err = f.upload(path, req.Upload.Upload); err == nil {
			answer = &FileAnswer{Opened: opened}
		}
	case req.UploadEnd != nil:
		path = req.UploadEnd.Path
		err = f.uploadEnd(path, req.UploadEnd.Upload, req.UploadEnd.Commit)
		answer = done
	case req.Watch != nil:
		path = req.Watch.Path
		err = f.watches.start(req.Id, path, req.Watch.Recursive)
		answer = done
	}
	if err != nil {
		return &FileAnswer{Error: fileError(err, path)}
	}
	return answer
}

func pathErr(op, path string, err error) error {
	if err == nil {
		return nil
	}
	return &os.PathError{Op: op, Path: path, Err: err}
}

func lstat(path string) (*syscall.Stat_t, error) {
	var st syscall.Stat_t
	return &st, pathErr("lstat", path, syscall.Lstat(path, &st))
}

func stat(path string) (*syscall.Stat_t, error) {
	var st syscall.Stat_t
	return &st, pathErr("stat", path, syscall.Stat(path, &st))
}

func isDir(st *syscall.Stat_t) bool { return st.Mode&syscall.S_IFMT == syscall.S_IFDIR }

// describe is the FileInfo of path (its lstat).
func describe(path string, st *syscall.Stat_t) *FileInfo {
	kind := FileTypeOther
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFLNK:
		kind = FileTypeSymlink
	case syscall.S_IFDIR:
		kind = FileTypeDirectory
	case syscall.S_IFREG:
		kind = FileTypeFile
	}
	name := baseName(path)
	if name == "" {
		name = "/"
	}
	mtimeNs := int64(st.Mtim.Sec)*1e9 + int64(st.Mtim.Nsec)
	mtimeMs := mtimeNs / 1e6
	if mtimeNs < 0 && mtimeNs%1e6 != 0 {
		mtimeMs-- // floored, as for any time before 1970
	}
	info := &FileInfo{Name: name, Path: path, Type: kind, Size: st.Size, Mode: st.Mode & 0o7777, MtimeMs: mtimeMs}
	if kind == FileTypeSymlink {
		if target, err := os.Readlink(path); err == nil {
			info.Target = target
		}
	}
	return info
}

func statPath(path string) (*FileInfo, error) {
	st, err := lstat(path)
	if err != nil {
		return nil, err
	}
	return describe(path, st), nil
}

// listDirectory describes the entries of a directory (following a symlink to it), sorted by
// name; entries removed while listing are left out.
func listDirectory(path string) ([]*FileInfo, error) {
	st, err := stat(path)
	if err != nil {
		return nil, err
	}
	if !isDir(st) {
		return nil, &fsError{FileErrorKindNotADirectory, path + ": not a directory"}
	}
	// O_NONBLOCK: a FIFO swapped in since the stat must not hold the worker (O_DIRECTORY
	// refuses it anyway).
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, pathErr("open", path, err)
	}
	syscall.SetNonblock(fd, false)
	dir := os.NewFile(uintptr(fd), path)
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]*FileInfo, 0, len(names))
	for _, name := range names {
		entry := joinPath(path, name)
		st, err := lstat(entry)
		if errnoOf(err) == syscall.ENOENT {
			continue // removed while listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, describe(entry, st))
	}
	return out, nil
}

// makedirs is Python's os.makedirs(name, exist_ok=True), which the server and its fake follow.
func makedirs(name string) error {
	head, tail := splitPath(name)
	if tail == "" {
		head, tail = splitPath(head)
	}
	if head != "" && tail != "" {
		if _, err := stat(head); err != nil {
			if err := makedirs(head); err != nil && errnoOf(err) != syscall.EEXIST {
				return err
			}
			if tail == "." {
				return nil
			}
		}
	}
	if err := syscall.Mkdir(name, 0o777); err != nil {
		if st, serr := stat(name); serr != nil || !isDir(st) {
			return pathErr("mkdir", name, err)
		}
	}
	return nil
}

// makeParents creates path and its missing parents, telling a path that exists as a file
// from a parent that is a file.
func makeParents(path string) error {
	err := makedirs(path)
	var pe *os.PathError
	if errors.As(err, &pe) && pe.Err == syscall.EEXIST {
		if pe.Path == path {
			return &fsError{FileErrorKindAlreadyExists, path + ": exists and is not a directory"}
		}
		return &fsError{FileErrorKindNotADirectory, fmt.Sprintf("%s: a parent (%s) is not a directory", path, pe.Path)}
	}
	return err
}

// removePath removes a file, a symlink, an empty directory or (recursive) a whole tree.
func removePath(path string, recursive bool) error {
	st, err := lstat(path)
	if err != nil {
		return err
	}
	if !isDir(st) {
		return pathErr("unlink", path, syscall.Unlink(path))
	}
	if !recursive {
		return pathErr("rmdir", path, syscall.Rmdir(path))
	}
	return removeTree(path)
}

const (
	atRemoveDir       = 0x200
	atSymlinkNofollow = 0x100
)

// removeTree removes a directory and everything below it, depth first, stopping at the first
// failure (as shutil.rmtree does). It goes down through directory descriptors opened with
// O_NOFOLLOW, so a directory swapped for a symlink meanwhile is never followed.
func removeTree(path string) error {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return pathErr("open", path, err)
	}
	if err := removeContents(fd, path); err != nil {
		return err
	}
	return pathErr("rmdir", path, syscall.Rmdir(path))
}

// removeContents removes everything in the directory open as fd (closed before it returns).
func removeContents(fd int, path string) error {
	dir := os.NewFile(uintptr(fd), path)
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, name := range names {
		entry := joinPath(path, name)
		var st syscall.Stat_t
		if err := fstatat(fd, name, &st, atSymlinkNofollow); err != nil {
			if err == syscall.ENOENT {
				continue
			}
			return pathErr("lstat", entry, err)
		}
		if isDir(&st) {
			sub, err := syscall.Openat(fd, name, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
			if err != nil {
				return pathErr("open", entry, err)
			}
			if err := removeContents(sub, entry); err != nil {
				return err
			}
			if err := unlinkat(fd, name, atRemoveDir); err != nil {
				return pathErr("rmdir", entry, err)
			}
		} else if err := unlinkat(fd, name, 0); err != nil {
			return pathErr("unlink", entry, err)
		}
	}
	return nil
}

func fstatat(dirfd int, name string, st *syscall.Stat_t, flags int) error {
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return err
	}
	_, _, errno := syscall.Syscall6(sysFstatat, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(st)), uintptr(flags), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

func unlinkat(dirfd int, name string, flags int) error {
	p, err := syscall.BytePtrFromString(name)
	if err != nil {
		return err
	}
	_, _, errno := syscall.Syscall(syscall.SYS_UNLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(p)), uintptr(flags))
	if errno != 0 {
		return errno
	}
	return nil
}

var specialKinds = []struct {
	mode uint32
	what string
}{
	{syscall.S_IFIFO, "a FIFO"},
	{syscall.S_IFCHR, "a character device"},
	{syscall.S_IFBLK, "a block device"},
	{syscall.S_IFSOCK, "a socket"},
}

func checkRegular(path string, mode uint32) error {
	if mode&syscall.S_IFMT == syscall.S_IFDIR {
		return &fsError{FileErrorKindIsADirectory, path + ": is a directory"}
	}
	for _, special := range specialKinds {
		if mode&syscall.S_IFMT == special.mode {
			return &fsError{FileErrorKindPermissionDenied, path + ": is " + special.what +
				", not a regular file; only regular files move through the files API (use exec to read it)"}
		}
	}
	return nil
}

// openRegular refuses special files before opening them (opening a FIFO waits for a writer, a
// device may do anything); O_NONBLOCK and the check after it cover a path swapped in between.
func openRegular(path string, flags int) (int, error) {
	st, err := stat(path)
	if err != nil {
		return -1, err
	}
	if err := checkRegular(path, st.Mode); err != nil {
		return -1, err
	}
	fd, err := syscall.Open(path, flags|syscall.O_CLOEXEC|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return -1, pathErr("open", path, err)
	}
	var fst syscall.Stat_t
	if err := syscall.Fstat(fd, &fst); err != nil {
		syscall.Close(fd)
		return -1, pathErr("fstat", path, err)
	}
	if err := checkRegular(path, fst.Mode); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// identity is the answer for a file the agent holds open for the server.
func identity(fd int) (*OpenedFile, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, err
	}
	return &OpenedFile{Fd: int32(fd), Size: st.Size, Dev: uint64(st.Dev), Ino: st.Ino}, nil
}

// read opens the file for the server, which reopens this open file through /proc/<agent>/fd
// and reads it itself; the agent keeps it open until Release.
func (f *fileServer) read(path string) (*OpenedFile, error) {
	fd, err := openRegular(path, syscall.O_RDONLY)
	if err != nil {
		return nil, err
	}
	opened, err := identity(fd)
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	f.openMu.Lock()
	f.openFiles[fd] = true
	f.openMu.Unlock()
	return opened, nil
}

func (f *fileServer) release(fd int) {
	f.openMu.Lock()
	held := f.openFiles[fd]
	delete(f.openFiles, fd)
	f.openMu.Unlock()
	if held {
		syscall.Close(fd)
	}
}

func uploadTemp(path, token string) string {
	parent := dirName(path)
	if parent == "" {
		parent = "/"
	}
	return joinPath(parent, "."+baseName(path)+uploadMark+token)
}

func isAlnum(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// upload creates the upload's temporary file beside path, for the server to reopen through
// /proc/<agent>/fd and write; uploadEnd renames it onto path (or removes it).
func (f *fileServer) upload(path, token string) (*OpenedFile, error) {
	if !isAlnum(token) {
		return nil, &fsError{FileErrorKindUnspecified, "bad upload id"}
	}
	if st, err := stat(path); err == nil && isDir(st) {
		return nil, &fsError{FileErrorKindIsADirectory, path + ": is a directory"}
	} else if err != nil && errnoOf(err) != syscall.ENOENT {
		return nil, err
	}
	parent := dirName(path)
	if parent == "" {
		parent = "/"
	}
	if err := makeParents(parent); err != nil {
		var fe *fsError
		if errors.As(err, &fe) {
			return nil, &fsError{FileErrorKindNotADirectory, fe.message}
		}
		return nil, err
	}
	temp := uploadTemp(path, token)
	fd, err := syscall.Open(temp, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, pathErr("open", temp, err)
	}
	opened, err := identity(fd)
	if err != nil {
		syscall.Close(fd)
		syscall.Unlink(temp)
		return nil, err
	}
	f.openMu.Lock()
	if old, ok := f.uploads[token]; ok {
		syscall.Close(old)
	}
	f.uploads[token] = fd
	f.openMu.Unlock()
	return opened, nil
}

func (f *fileServer) uploadEnd(path, token string, commit bool) error {
	f.openMu.Lock()
	fd, ok := f.uploads[token]
	delete(f.uploads, token)
	f.openMu.Unlock()
	if !ok {
		return &fsError{FileErrorKindUnspecified, "no such upload"}
	}
	syscall.Close(fd)
	temp := uploadTemp(path, token)
	if !commit {
		syscall.Unlink(temp)
		return nil
	}
	if st, err := stat(path); err == nil {
		// An existing file keeps its mode.
		if err := syscall.Chmod(temp, st.Mode&0o7777); err != nil {
			return pathErr("chmod", temp, err)
		}
	} else if errnoOf(err) != syscall.ENOENT {
		return err
	}
	return pathErr("rename", temp, syscall.Rename(temp, path))
}
