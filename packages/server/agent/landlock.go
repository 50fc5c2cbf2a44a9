package main

// Landlock for host-side jobs that, once started, need no file (the relay): every thread of the
// process loses all filesystem access (what is open stays open), and, where the kernel has it
// (Landlock ABI 6, Linux 6.12), signals to and abstract unix sockets of processes outside the
// domain. A job keeping root's uid can then neither read root's files nor signal root's
// processes, whatever a flaw in what it parses would have it do. Needs no_new_privs.
//
// What it leaves (a follow-up, not done here): before Landlock ABI 6 (kernels before 6.12) a
// compromised job keeping root's uid can still signal root's processes; and no Landlock ABI up
// to 6 restricts connecting to a named UNIX socket that is already open for connection (it
// takes no file access to connect(2) to /var/run/docker.sock: the path is resolved by the
// socket layer, not opened). A seccomp filter allowing socket(2) for AF_INET/AF_INET6 only
// (and kill(2) for the job's own process) would close both; there is none yet.

import (
	"syscall"
	"unsafe"
)

const (
	sysLandlockCreateRuleset     = 444 // the same number on amd64 and arm64
	sysLandlockRestrictSelf      = 446
	landlockCreateRulesetVersion = 1
	landlockScopeAbstractSocket  = 1
	landlockScopeSignal          = 2
)

type landlockRulesetAttr struct {
	handledAccessFS  uint64
	handledAccessNet uint64
	scoped           uint64
}

// landlockNoFiles restricts every thread as above. It answers the kernel's Landlock ABI version,
// 0 when the kernel has none (nothing is restricted then).
func landlockNoFiles() (int, error) {
	abi, _, errno := syscall.RawSyscall(sysLandlockCreateRuleset, 0, 0, landlockCreateRulesetVersion)
	if errno != 0 {
		if errno == syscall.ENOSYS || errno == syscall.EOPNOTSUPP {
			return 0, nil
		}
		return 0, errno
	}
	// Every filesystem right of ABI 1 (13 of them), and those later ABIs added: refer (2),
	// truncate (3), ioctl on devices (5).
	attr := landlockRulesetAttr{handledAccessFS: 1<<13 - 1}
	if abi >= 2 {
		attr.handledAccessFS |= 1 << 13
	}
	if abi >= 3 {
		attr.handledAccessFS |= 1 << 14
	}
	if abi >= 5 {
		attr.handledAccessFS |= 1 << 15
	}
	size := unsafe.Sizeof(attr.handledAccessFS)
	if abi >= 4 {
		size += unsafe.Sizeof(attr.handledAccessNet) // (network left alone)
	}
	if abi >= 6 {
		attr.scoped = landlockScopeAbstractSocket | landlockScopeSignal
		size += unsafe.Sizeof(attr.scoped)
	}
	fd, _, errno := syscall.RawSyscall(sysLandlockCreateRuleset, uintptr(unsafe.Pointer(&attr)), size, 0)
	if errno != 0 {
		return 0, errno
	}
	defer syscall.Close(int(fd))
	if _, _, errno := syscall.AllThreadsSyscall(sysLandlockRestrictSelf, fd, 0, 0); errno != 0 {
		return 0, errno
	}
	return int(abi), nil
}
