package main

import (
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"unsafe"
)

const (
	fSetPipeSize = 1031 // F_SETPIPE_SZ
	// Bigger output pipes let the server take more per read when it is busy sending.
	outputPipeSize = 1 << 20
	defaultPath    = "/bin:/usr/bin" // execvp's, when the environment has no PATH
)

// processes starts the server's processes and reports how they end. As pid 1 (a subreaper in
// all but name) it reaps every process of the sandbox, its own and orphans alike.
//
// A process's stdio are pipes the agent makes. The server's ends (stdin's write end, the read
// ends of stdout and stderr) are named in Started; the server reopens them through
// /proc/<agent>/fd/<n> and then says ReleaseStdio, and the agent closes its copies. No name
// anywhere leads to them. With a pty the process gets a terminal as its controlling terminal
// and stdio, and the agent copies between the terminal and the pipes (goroutines on the
// runtime's poller: no thread, no pid needed).
type processes struct {
	emit     func(*Event)
	oomScore *oomScore
	// Who processes run as (see identity.go), and the thread that checks what they will meet as them.
	identity *acting
	asUser   *userThread
	// The one thread every process is forked from. The server moves it, and it alone, into the
	// cgroup that bounds the workload's pids (see Ready.spawner_tid): a child starts in its
	// parent thread's cgroup, so every process does, and the agent's other threads stay out.
	spawner *lockedThread
	// Held from a fork until its process is known by pid, and while reaping: no exit is seen
	// before its start is recorded and reported.
	mu        sync.Mutex
	byPid     map[int]string
	byID      map[string]int
	terminals map[string]*os.File // exec id → terminal master, while its output is copied
	held      map[string][]int    // exec id → the server's ends of its pipes, until ReleaseStdio
}

func newProcesses(emit func(*Event), identity *acting) *processes {
	return &processes{
		emit:      emit,
		oomScore:  openOOMScore(),
		identity:  identity,
		asUser:    newUserThread(identity),
		spawner:   startLockedThread(),
		byPid:     map[int]string{},
		byID:      map[string]int{},
		terminals: map[string]*os.File{},
		held:      map[string][]int{},
	}
}

// stdio is what a process is started with (-1: none). Without a pty, in, out and err are the
// process's own ends of its pipes; with one, the process gets slave as all three, and in and
// out are the copiers' ends (the terminal's input is read from in, its output written to out).
type stdio struct {
	in, out, err  int
	master, slave int
	// The server's ends: stdin's write end, the read ends of stdout and stderr.
	serverIn, serverOut, serverErr int
	pty                            bool
}

// closeOwn closes the agent's copies of the process's side (the process has its own once it
// runs; the copiers took theirs).
func (s *stdio) closeOwn() {
	for _, fd := range []*int{&s.in, &s.out, &s.err, &s.master, &s.slave} {
		if *fd >= 0 {
			syscall.Close(*fd)
			*fd = -1
		}
	}
}

// closeAll closes everything, the server's ends too (nothing will start).
func (s *stdio) closeAll() {
	s.closeOwn()
	for _, fd := range []*int{&s.serverIn, &s.serverOut, &s.serverErr} {
		if *fd >= 0 {
			syscall.Close(*fd)
			*fd = -1
		}
	}
}

// start runs an Exec request to its Started (and maybe Exited) or Failed event.
func (p *processes) start(id string, req *Exec) {
	if len(req.Argv) == 0 || req.Argv[0] == "" {
		p.emit(&Event{Id: id, Failed: &Failed{Error: "cannot start: no program given"}})
		return
	}
	std, err := makeStdio(req)
	if err != nil {
		p.emit(&Event{Id: id, Failed: &Failed{Error: err.Error()}})
		return
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = "/"
	}
	env := environ(req.Env)

	// What the process would fail on is found first, in the order a child would meet it: its
	// working directory, then its program, with the permissions of the user it runs as. Go's
	// fork reports only an errno, not which step failed, so a failure found here is reported
	// as the process itself would (see below).
	var doing, path string
	var errno syscall.Errno
	check := func() {
		doing, errno = "change to directory "+cwd, checkDirectory(cwd)
		if errno == 0 {
			doing = "run " + req.Argv[0]
			path, errno = lookPath(req.Argv[0], req.Env, cwd)
		}
	}
	creds, _ := p.identity.current()
	if creds != nil {
		p.asUser.do(check)
	} else {
		check() // as the agent itself
	}
	// Its own session and process group (signals go to the group), with the terminal (child
	// descriptor 0) as its controlling terminal; the user's ids and groups when configured.
	sys := &syscall.SysProcAttr{Setsid: true, Setctty: std.pty, Ctty: 0}
	if creds != nil {
		sys.Credential = &syscall.Credential{Uid: creds.uid, Gid: creds.gid, Groups: creds.groups}
		if std.pty {
			// Its terminal is its own, as a login's is (programs such as ssh and script check).
			syscall.Fchown(std.slave, int(creds.uid), -1)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pid := 0
	if errno == 0 {
		files := []uintptr{uintptr(std.in), uintptr(std.out), uintptr(std.errOrOut())}
		if std.pty {
			files = []uintptr{uintptr(std.slave), uintptr(std.slave), uintptr(std.slave)}
		}
		p.spawner.do(func() {
			p.oomScore.forChild(func() {
				pid, err = syscall.ForkExec(path, req.Argv, &syscall.ProcAttr{Dir: cwd, Env: env, Files: files, Sys: sys})
			})
		})
		if err != nil {
			errno = errnoOf(err)
			if errno == syscall.EAGAIN || errno == syscall.ENOMEM {
				// No process could be made (the pids limit, or memory): nothing ran.
				std.closeAll()
				p.emit(&Event{Id: id, Failed: &Failed{Error: "cannot start " + req.Argv[0] + ": " + strerror(errno) + forkHint(errno)}})
				return
			}
		}
	}
	if errno != 0 {
		// Said on the process's own error output, then it "exits" as a shell's child would:
		// 127 for a missing program or directory, 126 for one that cannot be run. The line is
		// in the pipe before the agent lets go of it, so the output ends after it.
		errorOut := std.errOrOut()
		if std.pty {
			errorOut = std.slave
		}
		writeAll(errorOut, []byte("sbx: cannot "+doing+": "+strerror(errno)+"\n"))
	}
	if std.pty {
		p.copyTerminal(id, &std)
	}
	std.closeOwn()
	p.held[id] = []int{std.serverIn, std.serverOut, std.serverErr}
	if pid > 0 {
		p.byPid[pid] = id
		p.byID[id] = pid
	}
	started := &Started{Pid: int32(pid), StdinFd: int32(std.serverIn), StdoutFd: int32(std.serverOut)}
	if std.serverErr >= 0 {
		started.StderrFd = int32(std.serverErr)
	}
	p.emit(&Event{Id: id, Started: started})
	if errno != 0 {
		code := int32(126)
		if errno == syscall.ENOENT {
			code = 127
		}
		p.emit(&Event{Id: id, Exited: &Exited{Code: &code}})
	}
}

// releaseStdio closes the agent's copies of the server's ends of an exec's pipes.
func (p *processes) releaseStdio(id string) {
	p.mu.Lock()
	fds := p.held[id]
	delete(p.held, id)
	p.mu.Unlock()
	for _, fd := range fds {
		if fd >= 0 {
			syscall.Close(fd)
		}
	}
}

func forkHint(errno syscall.Errno) string {
	if errno == syscall.EAGAIN {
		return " (the sandbox's pids limit is reached)"
	}
	return ""
}

// makeStdio makes the process's pipes, and its terminal when it asks for one. Nothing is left
// open on failure.
func makeStdio(req *Exec) (s stdio, err error) {
	s = stdio{in: -1, out: -1, err: -1, master: -1, slave: -1, serverIn: -1, serverOut: -1, serverErr: -1, pty: req.Pty != nil}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	var fds [2]int
	if err = syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return s, pipeError(err)
	}
	s.in, s.serverIn = fds[0], fds[1]
	if err = syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
		return s, pipeError(err)
	}
	s.serverOut, s.out = fds[0], fds[1]
	// Bigger output pipes let the server take more per read when it is busy sending (best
	// effort: the user's pipe quota may be spent).
	fcntl(s.out, fSetPipeSize, outputPipeSize)
	if !req.MergeStderr && !s.pty {
		if err = syscall.Pipe2(fds[:], syscall.O_CLOEXEC); err != nil {
			return s, pipeError(err)
		}
		s.serverErr, s.err = fds[0], fds[1]
		fcntl(s.err, fSetPipeSize, outputPipeSize)
	}
	if s.pty {
		rows, cols := req.Pty.Rows, req.Pty.Cols
		if rows == 0 {
			rows = 24
		}
		if cols == 0 {
			cols = 80
		}
		if s.master, s.slave, err = openTerminal(rows, cols); err != nil {
			return s, &agentError{"cannot allocate a terminal: " + describeErr(err)}
		}
	}
	return s, nil
}

func pipeError(err error) error {
	return &agentError{"cannot make the process's pipes: " + describeErr(err)}
}

func (s *stdio) errOrOut() int {
	if s.err >= 0 {
		return s.err
	}
	return s.out
}

// checkDirectory says why chdir(dir) would fail (0: it would not), with the calling thread's ids.
func checkDirectory(dir string) syscall.Errno {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return errnoOf(err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR {
		return syscall.ENOTDIR
	}
	// A directory the user may not enter (no search permission for it).
	if err := canExecute(dir); err != nil {
		return errnoOf(err)
	}
	return 0
}

// lookPath finds a program as execvpe would: a name with a slash as it is, else the first
// executable file of that name in PATH (from the process's environment). Relative entries are
// relative to cwd, where the process will be. The errno, when none is found, is the one the
// exec would have failed with: EACCES when a file was found but cannot be run, else ENOENT.
func lookPath(file string, env map[string]string, cwd string) (string, syscall.Errno) {
	if strings.Contains(file, "/") {
		return file, 0
	}
	pathEnv, ok := env["PATH"]
	if !ok {
		pathEnv = defaultPath
	}
	found := syscall.ENOENT
	for _, dir := range strings.Split(pathEnv, ":") {
		candidate := joinPath(dir, file)
		check := candidate
		if !strings.HasPrefix(check, "/") {
			check = joinPath(cwd, check)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(check, &st); err != nil {
			if e := errnoOf(err); e != syscall.ENOENT && e != syscall.ENOTDIR && found == syscall.ENOENT {
				found = e
			}
			continue
		}
		if st.Mode&syscall.S_IFMT == syscall.S_IFDIR || canExecute(check) != nil {
			if found == syscall.ENOENT {
				found = syscall.EACCES
			}
			continue
		}
		return candidate, 0
	}
	return "", found
}

const (
	sysFaccessat2 = 439 // the same number on amd64 and arm64
	atEaccess     = 0x200
	xOK           = 1
)

// canExecute is access(path, X_OK) with the calling thread's effective and fs ids (those of
// the user the process will run as, on the user thread), where access(2) would use the real ids.
func canExecute(path string) error {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return err
	}
	_, _, errno := syscall.Syscall6(sysFaccessat2, atFdcwdArg, uintptr(unsafe.Pointer(p)), xOK, atEaccess, 0, 0)
	if errno == syscall.ENOSYS { // Linux before 5.8: the agent's own ids
		return syscall.Access(path, xOK)
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// environ is the process's environment as execve takes it (sorted: the same every time).
func environ(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// copyTerminal starts copying between the terminal and the pipes: its output to the stdout
// pipe until every holder of its other end is gone, and the stdin pipe to it, the end of input
// as the terminal's end-of-file character (^D). The copiers own the master and their pipe ends
// from here on (their descriptors in std are taken over).
func (p *processes) copyTerminal(id string, std *stdio) {
	master := pollable(std.master, "ptmx")
	in := pollable(std.in, "stdin")
	out := pollable(std.out, "stdout")
	std.master, std.in, std.out = -1, -1, -1
	p.terminals[id] = master
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := master.Read(buf)
			if n > 0 {
				if _, werr := out.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil { // EIO: the terminal was hung up
				break
			}
		}
		out.Close()
		p.mu.Lock()
		if p.terminals[id] == master {
			delete(p.terminals, id)
		}
		p.mu.Unlock()
		master.Close()
	}()
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, err := in.Read(buf)
			if n > 0 {
				if _, werr := master.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				if n == 0 && isEOF(err) {
					master.Write([]byte{4})
				}
				break
			}
		}
		in.Close()
	}()
}

// signal sends sig to an exec's process group, or to the process if it has none yet.
func (p *processes) signal(id string, sig int32) {
	p.mu.Lock()
	pid := p.byID[id]
	p.mu.Unlock()
	if pid <= 0 {
		return
	}
	if err := syscall.Kill(-pid, syscall.Signal(sig)); err == syscall.ESRCH {
		syscall.Kill(pid, syscall.Signal(sig))
	}
}

// resize changes the window size of an exec's terminal.
func (p *processes) resize(id string, rows, cols uint32) {
	p.mu.Lock()
	master := p.terminals[id]
	p.mu.Unlock()
	if master == nil {
		return
	}
	if conn, err := master.SyscallConn(); err == nil {
		conn.Control(func(fd uintptr) { setWindowSize(int(fd), rows, cols) })
	}
}

// reap collects every process that has ended: the agent's own are reported, orphans that it
// inherited as pid 1 are just collected.
func (p *processes) reap() {
	for {
		p.mu.Lock()
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			p.mu.Unlock()
			continue
		}
		if err != nil || pid <= 0 {
			p.mu.Unlock()
			return
		}
		if id, ok := p.byPid[pid]; ok {
			delete(p.byPid, pid)
			delete(p.byID, id)
			exited := &Exited{}
			if status.Signaled() {
				sig := int32(status.Signal())
				exited.Signal = &sig
			} else {
				code := int32(status.ExitStatus())
				exited.Code = &code
			}
			p.emit(&Event{Id: id, Exited: exited})
		}
		p.mu.Unlock()
	}
}
