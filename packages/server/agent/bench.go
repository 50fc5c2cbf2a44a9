package main

import (
	"encoding/json"
	"os"
	"strconv"
	"syscall"
	"time"
)

// benchSpawn is the exec benchmark's baseline: it starts PROGRAM [ARG...] ROUNDS times the way
// the agent starts a process (fork and exec into a session of its own), with /dev/null as its
// stdio, waits for each, and prints {"ms": [...]}: each round's time from fork to reaped.
func benchSpawn(args []string) {
	if len(args) < 2 {
		fatal("usage: sbx-agent bench-spawn ROUNDS PROGRAM [ARG...]")
	}
	rounds, err := strconv.Atoi(args[0])
	if err != nil || rounds < 1 {
		fatal("bench-spawn: ROUNDS must be a positive number, not %q", args[0])
	}
	argv := args[1:]
	path, errno := lookPath(argv[0], map[string]string{"PATH": os.Getenv("PATH")}, "/")
	if errno != 0 {
		fatal("bench-spawn: cannot run %s: %s", argv[0], strerror(errno))
	}
	null, err := syscall.Open("/dev/null", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		fatal("bench-spawn: cannot open /dev/null: %v", err)
	}
	env := os.Environ()
	ms := make([]float64, 0, rounds)
	for i := 0; i < rounds; i++ {
		start := time.Now()
		pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
			Dir:   "/",
			Env:   env,
			Files: []uintptr{uintptr(null), uintptr(null), uintptr(null)},
			Sys:   &syscall.SysProcAttr{Setsid: true},
		})
		if err != nil {
			fatal("bench-spawn: cannot start %s: %v", argv[0], err)
		}
		var status syscall.WaitStatus
		for {
			if _, err := syscall.Wait4(pid, &status, 0, nil); err != syscall.EINTR {
				break
			}
		}
		ms = append(ms, float64(time.Since(start).Microseconds())/1000)
	}
	json.NewEncoder(os.Stdout).Encode(map[string][]float64{"ms": ms})
}
