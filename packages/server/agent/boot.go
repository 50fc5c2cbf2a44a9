package main

import (
	"runtime"
	"sync"
	"syscall"
)

const prSetDumpable = 4

// makeUndumpable sets PR_SET_DUMPABLE to 0 for the whole process.
func makeUndumpable() error {
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetDumpable, 0, 0, 0, 0, 0); errno != 0 {
		return errno
	}
	return nil
}

// setSoftOpenFiles sets the soft RLIMIT_NOFILE (at most the hard one).
func setSoftOpenFiles(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if n < lim.Max {
		lim.Cur = n
	} else {
		lim.Cur = lim.Max
	}
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}

const sysCloseRange = 436 // the same number on amd64 and arm64

// closeInherited closes every descriptor above stderr (the Go runtime holds none yet).
func closeInherited() error { return closeInheritedFrom(3) }

// closeInheritedFrom closes every descriptor from first on.
func closeInheritedFrom(first int) error {
	if _, _, errno := syscall.RawSyscall(sysCloseRange, uintptr(first), ^uintptr(0), 0); errno == 0 {
		return nil
	}
	// Kernels before 5.9: every descriptor /proc lists.
	dir, err := syscall.Open("/proc/self/fd", syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	var fds []int
	buf := make([]byte, 4096)
	for {
		n, err := syscall.ReadDirent(dir, buf)
		if err != nil {
			syscall.Close(dir)
			return err
		}
		if n == 0 {
			break
		}
		_, _, names := syscall.ParseDirent(buf[:n], -1, nil)
		for _, name := range names {
			fd := 0
			for _, c := range name {
				fd = fd*10 + int(c-'0')
			}
			if fd >= first && fd != dir {
				fds = append(fds, fd)
			}
		}
	}
	syscall.Close(dir)
	for _, fd := range fds {
		syscall.Close(fd)
	}
	return nil
}

// reserveThreads makes the Go runtime start n OS threads now and keep them for later. A thread
// takes a pid of the sandbox's pids limit, and the runtime aborts the whole process when it
// cannot start one it needs ("failed to create new OS thread"): under a fork bomb that holds
// every pid, the agent must never need a new one. The runtime keeps idle threads for reuse and
// starts a new one only when none is idle; the agent's blocking calls are bounded (its file
// workers, one exec at a time; pipes, terminals and inotify go through the runtime's poller,
// which blocks no thread), so a reserve taken at boot covers all it will ever run at once.
func reserveThreads(n int) {
	var locked, done sync.WaitGroup
	release := make(chan struct{})
	locked.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			// Each goroutine holds a thread of its own while it waits, so the runtime has to
			// start n of them; unlocked before it returns, the thread is kept, idle.
			runtime.LockOSThread()
			locked.Done()
			<-release
			runtime.UnlockOSThread()
			done.Done()
		}()
	}
	locked.Wait()
	close(release)
	done.Wait()
}
