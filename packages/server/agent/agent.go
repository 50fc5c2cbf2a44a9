package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
)

const (
	// Threads running Go code at once. The agent's work is small and mostly waiting: its file
	// workers and forks block in system calls, which hand the P on. One P, not two: every idle
	// sandbox pays per P (a cache of heap spans, ~100 KiB touched) and per thread (below).
	maxProcs = 1
	// File calls run on this many workers, started with the first call. Each is an OS thread
	// (~30 KiB of kernel memory: its stack and task, and a Go stack): a call is one short system
	// call or a chunk of a file (special files are refused before they are opened, and opened
	// without waiting), so two keep calls of one sandbox flowing while a third is queued.
	fileWorkers = 2
	// Threads reserved at boot when the agent shares the workload's pids limit (--reserve-threads:
	// a host where the server cannot keep the workload's processes in a cgroup of their own, see
	// cgroups.ts): one per running P and per blocking call that can be under way at once (file
	// workers, the user thread and the spawner, each locked to a thread of its own; a reap), and
	// some slack: with one P, every goroutine in a system call that outlasts sysmon's tick takes a
	// thread of its own (closing a watch's inotify, writing a terminal's output), so the spare
	// ones are what such calls at once may use. Otherwise the agent's threads are outside the
	// workload's limit, with room of their own, and are started as they are needed.
	reservedThreads = maxProcs + fileWorkers + 2 + 4
	// (An idle agent runs no garbage collection at all: its heap stays below the runtime's first
	// goal, 4 MiB. Forcing one once idle, to hand freed pages back (debug.FreeOSMemory), cost
	// each idle sandbox ~190 KiB more than it gave back: the collector's own metadata and its
	// workers' stacks, touched for the first time; measured with 100 idle sandboxes.)
)

// agent holds the event FIFO and the two kinds of work the server sends: processes and files.
type agent struct {
	events *os.File
	emitMu sync.Mutex
	// Who processes run as and file calls act as (Configure); nil until then: the agent itself.
	identity *acting
	procs    *processes
	files    *fileServer
}

// serve opens the control FIFOs, says it is ready, and serves requests until the control FIFO
// fails (it never ends otherwise: it is open for writing too, so it never reads end-of-file).
func serve(ctlPath, eventsPath string, reserve bool) error {
	runtime.GOMAXPROCS(maxProcs)
	// Every signal is handled, so none can end the agent: pid 1 of a pid namespace gets from
	// inside it only the signals it handles, and a Go program dies of those it does not. The
	// processes it starts get the default disposition of each (the runtime resets handled
	// signals in a new process), and an empty signal mask.
	signals := make(chan os.Signal, 64)
	signal.Notify(signals)
	if reserve {
		reserveThreads(reservedThreads)
	}

	// The server opened its ends before starting the sandbox: neither open waits.
	eventsFd, err := syscall.Open(eventsPath, syscall.O_WRONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", eventsPath, err)
	}
	// Read-write: never sees end-of-file when the server reopens its end.
	ctlFd, err := syscall.Open(ctlPath, syscall.O_RDWR|syscall.O_CLOEXEC|syscall.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", ctlPath, err)
	}
	a := &agent{events: pollable(eventsFd, eventsPath), identity: &acting{}}
	a.procs = newProcesses(a.emit, a.identity)
	a.files = newFileServer(a.emit, fileWorkers, a.identity)
	go func() {
		for sig := range signals {
			if sig == syscall.SIGCHLD {
				a.procs.reap()
			}
		}
	}()
	a.emit(&Event{Ready: &Ready{Version: version, SpawnerTid: int32(a.procs.spawner.tid)}})
	return a.readRequests(pollable(ctlFd, ctlPath))
}

// pollable wraps a descriptor for the runtime's poller: a read or write that would block parks
// its goroutine instead of holding a thread.
func pollable(fd int, name string) *os.File {
	syscall.SetNonblock(fd, true)
	return os.NewFile(uintptr(fd), name)
}

func (a *agent) readRequests(ctl *os.File) error {
	lines := bufio.NewReaderSize(ctl, 1<<16)
	for {
		line, err := lines.ReadBytes('\n')
		if len(line) > 1 {
			a.handle(line)
		}
		if err == io.EOF {
			continue // nothing more for now (the FIFO had no writer)
		}
		if err != nil {
			return fmt.Errorf("cannot read requests: %w", err)
		}
	}
}

func (a *agent) handle(line []byte) {
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		// A bad request must not end the sandbox.
		a.emit(&Event{Error: &RequestError{Error: "cannot read a request: " + err.Error()}})
		return
	}
	switch {
	case req.Configure != nil:
		a.configure(req.Id, req.Configure)
	case req.Exec != nil:
		a.procs.start(req.Id, req.Exec)
	case req.ReleaseStdio != nil:
		a.procs.releaseStdio(req.Id)
	case req.Signal != nil:
		a.procs.signal(req.Id, req.Signal.Signal)
	case req.Resize != nil:
		a.procs.resize(req.Id, req.Resize.Rows, req.Resize.Cols)
	case req.Unwatch != nil:
		a.files.unwatch(req.Id)
	case req.Stat != nil, req.List != nil, req.Mkdir != nil, req.Remove != nil, req.Read != nil,
		req.Release != nil, req.Upload != nil, req.UploadEnd != nil, req.Watch != nil:
		a.files.queue(&req)
	default:
		a.emit(&Event{Id: req.Id, Error: &RequestError{Error: "unknown request"}})
	}
}

// emit sends one event line; lines never interleave.
func (a *agent) emit(event *Event) {
	line, err := json.Marshal(event)
	if err != nil {
		line, _ = json.Marshal(&Event{Id: event.Id, Error: &RequestError{Error: "cannot encode an event: " + err.Error()}})
	}
	line = append(line, '\n')
	a.emitMu.Lock()
	defer a.emitMu.Unlock()
	// A server that is gone cannot hear of it; the sandbox ends with it.
	a.events.Write(line)
}
