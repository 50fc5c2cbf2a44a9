package main

import (
	"strings"
	"syscall"
)

// childOOMScoreAdj is the oom_score_adj every process the agent starts begins with; the agent
// keeps its own (0). When a sandbox runs out of memory that no process holds (a full tmpfs),
// every process is small, and the agent would be as likely a victim as the writer: killing it
// ends the sandbox. With the agent below its processes, the kernel kills one of them instead,
// and, under memory pressure on the whole host, a sandboxed process before the host's own.
// (Lowering the agent's score instead would need CAP_SYS_RESOURCE, which the server may lack.)
const childOOMScoreAdj = "500"

// oomScore gives each process the agent starts childOOMScoreAdj: the agent raises its own
// score just for the fork (a process inherits its parent's), then lowers it back, which needs
// no privilege (never below where it was).
type oomScore struct{ fd int }

func openOOMScore() *oomScore {
	fd, err := syscall.Open("/proc/self/oom_score_adj", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		fd = -1 // no /proc: the processes simply start with the agent's score
	}
	return &oomScore{fd}
}

// forChild runs fork with the agent's score at childOOMScoreAdj, then puts it back.
func (o *oomScore) forChild(fork func()) {
	own := o.read()
	if own == "" || own == childOOMScoreAdj {
		fork()
		return
	}
	o.write(childOOMScoreAdj)
	defer o.write(own)
	fork()
}

func (o *oomScore) read() string {
	if o.fd < 0 {
		return ""
	}
	var buf [16]byte
	n, err := syscall.Pread(o.fd, buf[:], 0)
	if err != nil || n <= 0 {
		return ""
	}
	return strings.TrimSpace(string(buf[:n]))
}

func (o *oomScore) write(value string) {
	syscall.Pwrite(o.fd, []byte(value), 0)
}
