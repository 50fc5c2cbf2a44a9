package main

// claim-ids: the server's claim on its range of host ids, held for as long as the server
// runs, so two servers on one machine never hand out the same blocks unknowingly. A host-side
// job, run as root by the server (never inside a sandbox):
//
//	sbx-agent claim-ids --lock FILE --start FIRST --count N
//
// It takes a write lock (fcntl F_SETLK) on bytes FIRST .. FIRST+N-1 of FILE, one byte per id
// (the file stays empty: a lock needs no data), says "claimed" on stdout, and holds it until
// its stdin ends (the server closed it, or died) or its parent dies. When a lock of another
// process overlaps, it says "taken START COUNT PID" (that lock's range and holder) and exits
// 3. Locks end with their process, so a claim never outlives its server, whatever ends it.

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

func parseClaimArgs(args []string) (lock string, start, count int64, err error) {
	start, count = -1, -1
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "--lock":
			lock = args[i+1]
		case "--start", "--count":
			n, perr := strconv.ParseInt(args[i+1], 10, 64)
			if perr != nil || n < 0 {
				return "", 0, 0, fmt.Errorf("%s must be a number, not %q", args[i], args[i+1])
			}
			if args[i] == "--start" {
				start = n
			} else {
				count = n
			}
		default:
			return "", 0, 0, fmt.Errorf("unknown argument %q", args[i])
		}
	}
	if len(args)%2 != 0 || lock == "" || start < 1 || count < 1 || start+count-1 > maxHostID {
		return "", 0, 0, errors.New("usage: claim-ids --lock FILE --start FIRST --count N (host ids 1 to 4294967294)")
	}
	return lock, start, count, nil
}

func cmdClaimIDs(args []string) error {
	if err := onHostAsRoot(); err != nil {
		return err
	}
	lock, start, count, err := parseClaimArgs(args)
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
	for {
		claim := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: 0, Start: start, Len: count}
		err := syscall.FcntlFlock(uintptr(fd), syscall.F_SETLK, &claim)
		if err == nil {
			break
		}
		if err != syscall.EAGAIN && err != syscall.EACCES {
			return fmt.Errorf("locking %s: %w", lock, err)
		}
		holder := claim
		if err := syscall.FcntlFlock(uintptr(fd), syscall.F_GETLK, &holder); err != nil {
			return fmt.Errorf("asking who holds %s: %w", lock, err)
		}
		if holder.Type != syscall.F_UNLCK { // (else: let go meanwhile, try again)
			fmt.Printf("taken %d %d %d\n", holder.Start, holder.Len, holder.Pid)
			os.Exit(claimTakenStatus)
		}
	}
	fmt.Println("claimed")
	// Held until the server lets go: the end of stdin (closed, or the server died).
	io.Copy(io.Discard, os.Stdin)
	return nil
}
