package main

import (
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"unsafe"
)

// agentError is a failure described in full by its message.
type agentError struct{ message string }

func (e *agentError) Error() string { return e.message }

// errnoOf is the errno behind err (0 if there is none).
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return 0
}

// strerror is the C library's text for errno ("No such file or directory"), as programs and
// the agent's earlier messages say it.
func strerror(errno syscall.Errno) string {
	text := errno.Error()
	if text == "" {
		return text
	}
	return strings.ToUpper(text[:1]) + text[1:]
}

// describeErr is "path: Reason" for a failed call on a path, else the error's own text.
func describeErr(err error) string {
	var pathErr *os.PathError
	if errors.As(err, &pathErr) {
		if errno := errnoOf(pathErr.Err); errno != 0 {
			return pathErr.Path + ": " + strerror(errno)
		}
		return pathErr.Path + ": " + pathErr.Err.Error()
	}
	if errno := errnoOf(err); errno != 0 {
		return strerror(errno)
	}
	return err.Error()
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }

func fcntl(fd, cmd, arg int) (int, syscall.Errno) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), uintptr(arg))
	return int(r), errno
}

func ioctl(fd int, request, arg uintptr) (uintptr, syscall.Errno) {
	r, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), request, arg)
	return r, errno
}

// writeAll writes all of data to a blocking descriptor.
func writeAll(fd int, data []byte) error {
	for len(data) > 0 {
		n, err := syscall.Write(fd, data)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// The terminal ioctls (the same numbers on amd64 and arm64).
const (
	tiocSwinsz  = 0x5414
	tiocSptlck  = 0x40045431
	tiocGptn    = 0x80045430
	tiocGptpeer = 0x5441
)

// openTerminal opens a new pseudo-terminal of the sandbox's own devpts (bwrap's --dev gives the
// sandbox one, /dev/ptmx leading to it): its master and its other end (both close-on-exec).
func openTerminal(rows, cols uint32) (master, slave int, err error) {
	master, err = syscall.Open("/dev/ptmx", syscall.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, -1, &os.PathError{Op: "open", Path: "/dev/ptmx", Err: err}
	}
	unlock := int32(0)
	if _, errno := ioctl(master, tiocSptlck, uintptr(unsafe.Pointer(&unlock))); errno != 0 {
		syscall.Close(master)
		return -1, -1, errno
	}
	// The other end from the master itself (Linux 4.13+), never through a path that could
	// lead elsewhere; by number on older kernels.
	r, errno := ioctl(master, tiocGptpeer, uintptr(syscall.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC))
	slave = int(r)
	if errno != 0 {
		var n uint32
		if _, errno := ioctl(master, tiocGptn, uintptr(unsafe.Pointer(&n))); errno != 0 {
			syscall.Close(master)
			return -1, -1, errno
		}
		path := "/dev/pts/" + itoa(int(n))
		if slave, err = syscall.Open(path, syscall.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0); err != nil {
			syscall.Close(master)
			return -1, -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
	}
	if errno := setWindowSize(master, rows, cols); errno != 0 {
		syscall.Close(master)
		syscall.Close(slave)
		return -1, -1, errno
	}
	return master, slave, nil
}

func setWindowSize(fd int, rows, cols uint32) syscall.Errno {
	size := [4]uint16{uint16(rows), uint16(cols), 0, 0}
	_, errno := ioctl(fd, tiocSwinsz, uintptr(unsafe.Pointer(&size)))
	return errno
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}

// O_PATH (the same on amd64 and arm64; Go's syscall package does not name it): a descriptor
// that only locates a file, opened with search permission on the way to it alone.
const oPath = 0x200000

// Paths as Python's os.path treats them (the agent's earlier behaviour, which the server and
// the fake follow): nothing is normalized.

// joinPath is os.path.join(dir, name) for a relative name.
func joinPath(dir, name string) string {
	if strings.HasPrefix(name, "/") || dir == "" {
		return name
	}
	if strings.HasSuffix(dir, "/") {
		return dir + name
	}
	return dir + "/" + name
}

// splitPath is os.path.split: the head (without trailing slashes, unless it is all slashes)
// and the last component (empty when the path ends with a slash).
func splitPath(path string) (head, tail string) {
	i := strings.LastIndex(path, "/") + 1
	head, tail = path[:i], path[i:]
	if trimmed := strings.TrimRight(head, "/"); trimmed != "" {
		head = trimmed
	}
	return head, tail
}

// dirName is os.path.dirname.
func dirName(path string) string {
	head, _ := splitPath(path)
	return head
}

// baseName is os.path.basename.
func baseName(path string) string {
	_, tail := splitPath(path)
	return tail
}
