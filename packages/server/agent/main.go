// Command sbx-agent is pid 1 of every local sbx sandbox.
//
// It starts the processes the server asks for and reports how they end, serves file calls, and
// watches files. It is one static binary with no dependency on the sandbox's root (no libc, no
// shell, no python), bound into the sandbox read-only by the server, so it runs alike in any
// image. Because it (and so every process it starts) descends from bubblewrap, all of them
// share the sandbox's namespaces, root, cgroup, seccomp filter and no_new_privs.
//
// The protocol (JSON lines over two FIFOs in /.sbx) is defined once, in
// proto/sbx/agent/v1/agent.proto; protocol.gen.go is generated from it.
//
// As the server starts it (--open-files: the soft open-files limit of the sandbox's processes;
// --reserve-threads: the agent shares the workload's pids limit, see reserveThreads):
//
//	sbx-agent [--open-files N] [--reserve-threads]
//
// On the host, as root, the server runs it to mount a sandbox's root before the sandbox exists
// (never inside a sandbox: see mount_root.go):
//
//	sbx-agent mount-root ...
//
// and, for as long as it runs, to claim its range of host ids (see claim_ids.go):
//
//	sbx-agent claim-ids ...
//
// and, for as long as it runs, to relay its tunnels' connections (see relay.go):
//
//	sbx-agent relay --parent PID ...
//
// mount-root runs it again, in a new user namespace, to make the namespace of its idmaps
// (`sbx-agent idmap-holder`, see idmapHolder).
//
// Subcommands, for tests and benchmarks (not used by the server):
//
//	sbx-agent --version
//	sbx-agent bench-spawn ROUNDS PROGRAM [ARG...]
package main

import (
	"fmt"
	"os"
	"strconv"
)

// version is set by the build (-ldflags -X main.version=...).
var version = "dev"

func main() {
	// First of all: sandboxed code runs as this process's uid. Were the agent dumpable, that
	// code could ptrace it or write its memory through /proc/1/mem, and make it hand the server
	// any file it likes. (Processes it starts are dumpable again once they exec.)
	if err := makeUndumpable(); err != nil {
		fatal("cannot make the agent non-dumpable: %v", err)
	}
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "--version":
			fmt.Printf("sbx-agent %s\n", version)
			return
		case "bench-spawn":
			benchSpawn(os.Args[2:])
			return
		case "mount-root":
			if err := cmdMountRoot(os.Args[2:]); err != nil {
				fatal("%v", err)
			}
			return
		case "idmap-holder": // (mount-root's, see idmapHolder)
			holdIdmap()
			return
		case "claim-ids":
			if err := cmdClaimIDs(os.Args[2:]); err != nil {
				fatal("claim-ids: %v", err)
			}
			return
		case "relay":
			if err := cmdRelay(os.Args[2:]); err != nil {
				fatal("relay: %v", err)
			}
			return
		}
	}
	// Otherwise it serves a sandbox, as its pid 1.
	openFiles, reserve := serveFlags(os.Args[1:])
	// bubblewrap leaves the capabilities it grants in the inheritable and ambient sets too.
	if err := clearInheritableCaps(); err != nil {
		fatal("cannot clear the inheritable capabilities: %v", err)
	}
	// Whatever the server's own parent or bwrap left open must not reach sandboxed code.
	if err := closeInherited(); err != nil {
		fatal("cannot close inherited descriptors: %v", err)
	}
	// Go raises its soft open-files limit to the hard one as it starts, and the processes it
	// starts would inherit that: they get the launcher's soft limit back (the hard one stays).
	if openFiles > 0 {
		if err := setSoftOpenFiles(openFiles); err != nil {
			fatal("cannot set the open-files limit: %v", err)
		}
	}
	if err := serve("/.sbx/ctl", "/.sbx/events", reserve); err != nil {
		fatal("%v", err)
	}
}

// serveFlags reads the arguments the server starts the agent with.
func serveFlags(args []string) (openFiles uint64, reserveThreads bool) {
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--open-files":
			if i+1 >= len(args) {
				fatal("usage: sbx-agent --open-files N")
			}
			n, err := strconv.ParseUint(args[i+1], 10, 64)
			if err != nil || n < 64 {
				fatal("--open-files must be a number of at least 64, not %q", args[i+1])
			}
			openFiles = n
			i++
		case "--reserve-threads":
			reserveThreads = true
		default:
			fatal("unknown argument %q (usage: sbx-agent [--open-files N] [--reserve-threads] | --version | bench-spawn ROUNDS PROGRAM [ARG...] | mount-root ... | claim-ids ... | relay ...)", args[i])
		}
	}
	return openFiles, reserveThreads
}

func fatal(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "sbx-agent: "+format+"\n", args...)
	os.Exit(1)
}
