package main

// Moving bytes from one TCP socket to another without copying them through the relay: splice(2)
// into a pipe of the relay's and out of it, in steps of up to a MiB (Go's own io.Copy between
// TCP sockets splices too, but through 64 KiB pipes: a quarter less throughput here).

import (
	"bufio"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	// splicePipeSize: the pipe's capacity asked for (the default /proc/sys/fs/pipe-max-size).
	splicePipeSize = 1 << 20
	spliceMove     = 1 // SPLICE_F_MOVE
	spliceNonblock = 2 // SPLICE_F_NONBLOCK
	// spliceWorthIt: shorter copies go through a buffer (no pipe made for them).
	spliceWorthIt = 64 << 10
)

// splicer is one direction's pipe, made when first needed and closed with the connection.
type splicer struct {
	pipe   [2]int
	made   bool
	broken bool // no pipe could be made: copies go through a buffer
	// active (if set) is told when bytes last moved (unix ns): the connection's idle watch.
	active *int64
}

func (s *splicer) touch() {
	if s.active != nil {
		atomic.StoreInt64(s.active, time.Now().UnixNano())
	}
}

// touchingWriter tells its splicer of every write.
type touchingWriter struct {
	w io.Writer
	s *splicer
}

func (t touchingWriter) Write(b []byte) (int, error) {
	n, err := t.w.Write(b)
	t.s.touch()
	return n, err
}

func (s *splicer) close() {
	if s.made {
		syscall.Close(s.pipe[0])
		syscall.Close(s.pipe[1])
		s.made = false
	}
}

func (s *splicer) ready() bool {
	if s.made || s.broken {
		return s.made
	}
	if err := syscall.Pipe2(s.pipe[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		s.broken = true
		return false
	}
	s.made = true
	// (A smaller pipe than asked for still works, in smaller steps.)
	syscall.Syscall(syscall.SYS_FCNTL, uintptr(s.pipe[1]), fSetPipeSize, splicePipeSize)
	return true
}

// copyN moves n bytes (n < 0: up to the end of src) from src to dst: first what br (src's
// reader, if any) holds, then straight from src. It returns how many bytes it moved; an unexpected end
// of src before n bytes is io.ErrUnexpectedEOF.
func (s *splicer) copyN(dst *net.TCPConn, br *bufio.Reader, src *net.TCPConn, n int64) (int64, error) {
	var moved int64
	if br != nil && br.Buffered() > 0 && n != 0 {
		buffered := br.Buffered()
		take := int64(buffered)
		if n >= 0 && take > n {
			take = n
		}
		b, _ := br.Peek(int(take))
		if _, err := dst.Write(b); err != nil {
			return 0, err
		}
		br.Discard(int(take))
		moved = take
		s.touch()
	}
	if n >= 0 && moved == n {
		return moved, nil
	}
	rest := int64(-1)
	if n >= 0 {
		rest = n - moved
	}
	var m int64
	var err error
	if (rest < 0 || rest >= spliceWorthIt) && s.ready() {
		m, err = s.splice(dst, src, rest)
	} else {
		var r io.Reader = src
		if rest >= 0 {
			r = io.LimitReader(src, rest)
		}
		m, err = io.CopyBuffer(touchingWriter{dst, s}, r, make([]byte, 32<<10))
	}
	moved += m
	if err == nil && rest >= 0 && m < rest {
		err = io.ErrUnexpectedEOF
	}
	return moved, err
}

// splice moves up to n bytes (n < 0: up to the end) from src to dst through the pipe. The waits
// are the sockets' own (Go's poller: their deadlines and closes apply).
func (s *splicer) splice(dst, src *net.TCPConn, n int64) (int64, error) {
	srcRaw, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dstRaw, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var moved int64
	for n != 0 {
		want := splicePipeSize
		if n > 0 && n < int64(want) {
			want = int(n)
		}
		var got int64
		var serr error
		if err := srcRaw.Read(func(fd uintptr) bool {
			for {
				got, serr = syscall.Splice(int(fd), nil, s.pipe[1], nil, want, spliceMove|spliceNonblock)
				if serr != syscall.EINTR {
					return serr != syscall.EAGAIN
				}
			}
		}); err != nil {
			return moved, err
		}
		if serr != nil {
			return moved, serr
		}
		if got == 0 {
			return moved, nil // the end of src
		}
		for left := got; left > 0; {
			var put int64
			var werr error
			if err := dstRaw.Write(func(fd uintptr) bool {
				for {
					put, werr = syscall.Splice(s.pipe[0], nil, int(fd), nil, int(left), spliceMove|spliceNonblock)
					if werr != syscall.EINTR {
						return werr != syscall.EAGAIN
					}
				}
			}); err != nil {
				s.drop()
				return moved, err
			}
			if werr != nil {
				s.drop()
				return moved, werr
			}
			left -= put
			moved += put
			s.touch()
		}
		if n > 0 {
			n -= got
		}
	}
	return moved, nil
}

// drop closes a pipe that may still hold bytes (its connection is failing anyway).
func (s *splicer) drop() {
	s.close()
	s.broken = true
}
