package main

// claim-ids: the server's claim on its range of host ids, held for as long as the server
// runs, so two servers on one machine never hand out the same blocks unknowingly. A host-side
// job, run as root by the server (never inside a sandbox):
//
//	sbx-agent claim-ids --lock FILE --start FIRST --count N [--shared-start FIRST --shared-count N]
//
// It takes a write lock (fcntl F_SETLK) on bytes FIRST .. FIRST+N-1 of FILE, one byte per id
// (the file stays empty: a lock needs no data), and a read lock on the shared range if given
// (the image store's layer ids: no process runs as them, so servers may share them, but no
// server's sandboxes may run as them), says "claimed" on stdout, and holds them until its stdin
// ends (the server closed it, or died) or its parent dies. When a lock of another process
// overlaps the range, it says "taken START COUNT PID" (that lock's range and holder), or
// "shared-taken START COUNT PID" for the shared range, and exits 3. Locks end with their
// process, so a claim never outlives its server, whatever ends it.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"syscall"
)

// Exit status of claim-ids when another process holds ids of the range.
const claimTakenStatus = 3

// idSpan is a range of host ids: one byte each in the lock file.
type idSpan struct{ start, count int64 }

func (s idSpan) valid() bool { return s.start >= 1 && s.count >= 1 && s.start+s.count-1 <= maxHostID }

func parseClaimArgs(args []string) (lock string, claim, shared idSpan, err error) {
	claim, shared = idSpan{-1, -1}, idSpan{-1, -1}
	numbers := map[string]*int64{
		"--start": &claim.start, "--count": &claim.count,
		"--shared-start": &shared.start, "--shared-count": &shared.count,
	}
	usage := errors.New("usage: claim-ids --lock FILE --start FIRST --count N [--shared-start FIRST --shared-count N] " +
		"(host ids 1 to 4294967294; the shared range apart from the other)")
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] == "--lock" {
			lock = args[i+1]
			continue
		}
		into := numbers[args[i]]
		if into == nil {
			return "", idSpan{}, idSpan{}, fmt.Errorf("unknown argument %q", args[i])
		}
		n, perr := strconv.ParseInt(args[i+1], 10, 64)
		if perr != nil || n < 0 {
			return "", idSpan{}, idSpan{}, fmt.Errorf("%s must be a number, not %q", args[i], args[i+1])
		}
		*into = n
	}
	if len(args)%2 != 0 || lock == "" || !claim.valid() {
		return "", idSpan{}, idSpan{}, usage
	}
	if shared == (idSpan{-1, -1}) {
		shared = idSpan{}
	} else if !shared.valid() || (shared.start < claim.start+claim.count && claim.start < shared.start+shared.count) {
		return "", idSpan{}, idSpan{}, usage
	}
	return lock, claim, shared, nil
}

// lockSpan takes a lock of kind (F_WRLCK, F_RDLCK) on span's bytes; when another process holds
// an overlapping one, it says so (as `taken`) and exits.
func lockSpan(fd int, lock string, kind int16, span idSpan, taken string) error {
	for {
		claim := syscall.Flock_t{Type: kind, Whence: 0, Start: span.start, Len: span.count}
		err := syscall.FcntlFlock(uintptr(fd), syscall.F_SETLK, &claim)
		if err == nil {
			return nil
		}
		if err != syscall.EAGAIN && err != syscall.EACCES {
			return fmt.Errorf("locking %s: %w", lock, err)
		}
		holder := claim
		if err := syscall.FcntlFlock(uintptr(fd), syscall.F_GETLK, &holder); err != nil {
			return fmt.Errorf("asking who holds %s: %w", lock, err)
		}
		if holder.Type != syscall.F_UNLCK { // (else: let go meanwhile, try again)
			fmt.Printf("%s %d %d %d\n", taken, holder.Start, holder.Len, holder.Pid)
			os.Exit(claimTakenStatus)
		}
	}
}

func cmdClaimIDs(args []string) error {
	if err := onHostAsRoot(); err != nil {
		return err
	}
	lock, claim, shared, err := parseClaimArgs(args)
	if err != nil {
		return err
	}
	// Dies with the server even if its stdin were somehow kept open (a server that died
	// before this leaves stdin ended: the claim ends at once below).
	syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0)
	fd, err := syscall.Open(lock, syscall.O_RDWR|syscall.O_CREAT|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("opening %s: %w", lock, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG || st.Uid != 0 {
		return fmt.Errorf("%s must be a regular file of root's", lock)
	}
	if err := lockSpan(fd, lock, syscall.F_WRLCK, claim, "taken"); err != nil {
		return err
	}
	if shared.count > 0 {
		if err := lockSpan(fd, lock, syscall.F_RDLCK, shared, "shared-taken"); err != nil {
			return err
		}
	}
	fmt.Println("claimed")
	// Held until the server lets go: the end of stdin (closed, or the server died).
	io.Copy(io.Discard, os.Stdin)
	return nil
}
