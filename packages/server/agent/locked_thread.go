package main

import (
	"runtime"
	"syscall"
)

// lockedThread runs functions, one at a time, on one OS thread of its own, locked to it for good:
// state the kernel keeps per thread (fs ids, capabilities, a cgroup on v1) stays with the work
// done there, and the thread never runs anything else. The Go runtime never starts a new thread
// from a locked one (it asks its template thread), so nothing of that state spreads.
type lockedThread struct {
	work chan func()
	// Its thread id, in the agent's pid namespace.
	tid int
}

func startLockedThread() *lockedThread {
	t := &lockedThread{work: make(chan func())}
	started := make(chan int)
	go func() {
		// Never unlocked: the thread keeps what was done to it, and dies with the agent.
		runtime.LockOSThread()
		started <- syscall.Gettid()
		for fn := range t.work {
			fn()
		}
	}()
	t.tid = <-started
	return t
}

// do runs fn on the thread and returns once it has run.
func (t *lockedThread) do(fn func()) {
	done := make(chan struct{})
	t.work <- func() {
		fn()
		close(done)
	}
	<-done
}
