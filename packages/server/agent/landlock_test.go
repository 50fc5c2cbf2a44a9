package main

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Run again as a child of the test (Landlock cannot be undone): once restricted, no file opens,
// not even for reading, and (ABI 6) no process outside is signalled, the parent included.
func TestLandlockTakesFilesAndSignalsAway(t *testing.T) {
	if os.Getenv("SBX_LANDLOCK_CHILD") == "1" {
		if err := dropAllCaps(); err == syscall.ENOTSUP {
			t.Skip("built with cgo: AllThreadsSyscall is not available (the agent is built with CGO_ENABLED=0)")
		} else if err != nil { // (it sets no_new_privs)
			t.Fatal(err)
		}
		abi, err := landlockNoFiles()
		if err != nil {
			t.Fatal(err)
		}
		if abi == 0 {
			t.Skip("this kernel has no Landlock")
		}
		if _, err := os.ReadFile("/etc/hostname"); !os.IsPermission(err) {
			t.Errorf("reading a file: %v", err)
		}
		if err := os.WriteFile(os.Getenv("SBX_LANDLOCK_FILE"), []byte("x"), 0o600); !os.IsPermission(err) {
			t.Errorf("writing a file: %v", err)
		}
		if abi >= 6 {
			if err := syscall.Kill(os.Getppid(), 0); err != syscall.EPERM {
				t.Errorf("signalling its parent: %v", err)
			}
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestLandlockTakesFilesAndSignalsAway$", "-test.v")
	cmd.Env = append(os.Environ(), "SBX_LANDLOCK_CHILD=1", "SBX_LANDLOCK_FILE="+t.TempDir()+"/f")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	t.Logf("%s", out)
}
