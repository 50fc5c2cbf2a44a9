package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test binary stands in for the agent binary where mount-root runs itself again.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "idmap-holder":
			holdIdmap()
			os.Exit(0)
		case "idmap-parent": // a mount-root that started its holder, then is killed
			holder, err := startIdmapHolder(1_900_000_000, 2_147_483_648)
			if err != nil {
				fmt.Println("error:", err)
				os.Exit(1)
			}
			fmt.Println(holder.cmd.Process.Pid)
			time.Sleep(time.Hour)
		case "idmap-after-removal": // a mount-root whose binary was removed (replaced) since it started
			if err := os.Remove(os.Args[0]); err != nil {
				fmt.Println("error:", err)
				os.Exit(1)
			}
			holder, err := startIdmapHolder(1_900_000_000, 2_147_483_648)
			if err != nil {
				fmt.Println("error:", err)
				os.Exit(1)
			}
			holder.stop()
			fmt.Println("started")
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

func TestIdmapUsernsMapsTheBlockAndLeavesNoProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run as root: mount-root's namespaces are made by host root (as in CI)")
	}
	fd, err := idmapUserns(1_900_000_000, 2_147_483_648)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFd(fd)
	if ours, _ := os.Readlink("/proc/self/ns/user"); ours == mustReadlink(t, fmt.Sprintf("/proc/self/fd/%d", fd)) {
		t.Error("the descriptor is of this process's own user namespace")
	}
	children, _ := filepath.Glob("/proc/self/task/*/children")
	for _, file := range children {
		if text, _ := os.ReadFile(file); strings.TrimSpace(string(text)) != "" {
			t.Errorf("a child is left: %s", text)
		}
	}
}

// mount-root killed (SIGKILL) once its holder runs: the holder must not outlive it (it would
// hold a user namespace as root for ever).
func TestIdmapHolderEndsWithMountRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run as root: mount-root's namespaces are made by host root (as in CI)")
	}
	parent := exec.Command(os.Args[0], "idmap-parent")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		parent.Process.Kill()
		t.Fatalf("the stand-in mount-root said %q", line)
	}
	// The holder is in a namespace of its own, mapped as asked (by Go, before it exec'd).
	if uidMap, _ := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid)); strings.Join(strings.Fields(string(uidMap)), " ") != "1900000000 2147483648 65536" {
		t.Errorf("the holder's uid_map: %q", uidMap)
	}
	parent.Process.Kill()
	parent.Wait()
	for i := 0; ; i++ {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return // gone (or a zombie waiting for its new parent to reap it)
		}
		if i == 200 {
			t.Fatalf("the holder %d outlived its mount-root by 10 s", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The holder is this very program, even when its file was removed or replaced since it started
// (installAgent replaces the data dir's binary).
func TestIdmapHolderIsThisProgramWhateverBecameOfItsPath(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("run as root: mount-root's namespaces are made by host root (as in CI)")
	}
	binary, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	copied := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(copied, binary, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(copied, "idmap-after-removal").Output()
	if strings.TrimSpace(string(out)) != "started" {
		t.Errorf("no holder once the binary was removed: %s (%v)", out, err)
	}
}

func mustReadlink(t *testing.T, path string) string {
	target, err := os.Readlink(path)
	if err != nil {
		t.Fatal(err)
	}
	return target
}

func closeFd(fd int) { os.NewFile(uintptr(fd), "userns").Close() }
