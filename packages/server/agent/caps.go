package main

import (
	"syscall"
	"unsafe"
)

const (
	prCapAmbient         = 47
	prCapAmbientClearAll = 4
	prSetNoNewPrivs      = 38
)

// clearInheritableCaps empties the inheritable and ambient capability sets of every thread.
// bubblewrap puts the capabilities it grants (Docker's default set less three, inside the
// sandbox's user namespace only) in those sets too; Docker leaves both empty (CVE-2022-24769),
// so the agent does: root's processes then get exactly the bounding set on exec, a non-root user's none.
// (Under no_new_privs they could not gain anything through them either.)
func clearInheritableCaps() error {
	if _, _, errno := syscall.AllThreadsSyscall6(syscall.SYS_PRCTL, prCapAmbient, prCapAmbientClearAll, 0, 0, 0, 0); errno != 0 {
		return errno
	}
	hdr := capHeader{version: linuxCapabilityVersion}
	var data [2]capData
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CAPGET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		return errno
	}
	if data[0].inheritable == 0 && data[1].inheritable == 0 {
		return nil
	}
	data[0].inheritable, data[1].inheritable = 0, 0
	hdr.pid = 0
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		return errno
	}
	return nil
}

// dropAllCaps empties every capability set of every thread (effective, permitted, inheritable,
// ambient) and sets no_new_privs: the process keeps its uid (root's) and nothing of root's
// power beyond a uid's own files and sockets. For host-side jobs that need no capability once
// started (the relay), so that a flaw in what they parse gains nothing more.
func dropAllCaps() error {
	if _, _, errno := syscall.AllThreadsSyscall6(syscall.SYS_PRCTL, prCapAmbient, prCapAmbientClearAll, 0, 0, 0, 0); errno != 0 {
		return errno
	}
	hdr := capHeader{version: linuxCapabilityVersion}
	var data [2]capData
	if _, _, errno := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		return errno
	}
	if _, _, errno := syscall.AllThreadsSyscall6(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0, 0); errno != 0 {
		return errno
	}
	return nil
}
