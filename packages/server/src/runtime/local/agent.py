# sbx sandbox agent: pid 1 inside every local sandbox.
#
# It starts the processes the server asks for and reports how they end. Because it (and so
# every process it starts) descends from bubblewrap, all of them share the sandbox's
# namespaces, root, cgroup, seccomp filter and no_new_privs.
#
# Protocol (JSON lines over FIFOs in /.sbx, created by the server):
#   /.sbx/ctl    server -> agent  {"op":"exec","id":..,"argv":[..],"env":{..},"cwd":..,"dir":..,"stderr":"pipe"|"stdout",
#                                  "pty":{"rows":n,"cols":n}?}
#                                 {"op":"signal","id":..,"signal":n}
#                                 {"op":"resize","id":..,"rows":n,"cols":n}
#   /.sbx/events agent -> server  {"ev":"ready"} {"ev":"started","id":..,"pid":n}
#                                 {"ev":"exited","id":..,"code":n} | {"ev":"exited","id":..,"signal":n}
#                                 {"ev":"failed","id":..,"error":"..."}
# A process's stdio are FIFOs in its "dir": stdin, stdout, stderr. With "pty", the process
# gets a pseudo-terminal (from the sandbox's own devpts) as its controlling terminal and
# stdin/stdout/stderr; the agent copies between the terminal and the FIFOs.
import fcntl
import json
import os
import select
import signal
import struct
import sys
import termios
import threading

events = os.open("/.sbx/events", os.O_WRONLY)
ctl = os.open("/.sbx/ctl", os.O_RDWR)  # RDWR: never sees EOF when the server reopens
pids = {}  # pid -> process id
terminals = {}  # process id -> pty master fd
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def emit(obj):
    write_all(events, (json.dumps(obj) + "\n").encode())


def start(req):
    pid_id = req["id"]
    d = req["dir"]
    try:
        stdin = os.open(d + "/stdin", os.O_RDONLY)
        stdout = os.open(d + "/stdout", os.O_WRONLY)
        stderr = stdout if req.get("stderr") == "stdout" else os.open(d + "/stderr", os.O_WRONLY)
    except OSError as e:
        emit({"ev": "failed", "id": pid_id, "error": "cannot open stdio: %s" % e})
        return
    # Bigger output pipes let the server take more per read when it is busy sending.
    for fd in {stdout, stderr}:
        try:
            fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
    env = req.get("env") or {}
    cwd = req.get("cwd") or "/"
    argv = req["argv"]
    pty = req.get("pty")
    master = slave = None
    if pty is not None:
        try:
            master, slave = os.openpty()
            set_size(master, pty.get("rows") or 24, pty.get("cols") or 80)
        except OSError as e:
            for fd in {stdin, stdout, stderr}:
                os.close(fd)
            emit({"ev": "failed", "id": pid_id, "error": "cannot allocate a terminal: %s" % e})
            return
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            if slave is not None:
                fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
                for fd in (0, 1, 2):
                    os.dup2(slave, fd)
                for fd in {stdin, stdout, stderr, master, slave}:
                    if fd > 2:
                        os.close(fd)
            else:
                os.dup2(stdin, 0)
                os.dup2(stdout, 1)
                os.dup2(stderr, 2)
                for fd in {stdin, stdout, stderr}:
                    if fd > 2:
                        os.close(fd)
            for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        except BaseException as e:  # report why exec failed, then die like a shell would
            msg = str(e).encode()
            try:
                os.write(w, msg or b"exec failed")
            finally:
                os._exit(127 if isinstance(e, FileNotFoundError) else 126)
    os.close(w)
    if master is not None:
        os.close(slave)
        if stderr != stdout:
            os.close(stderr)  # a terminal has one output stream
        terminals[pid_id] = master
        threading.Thread(target=pump_output, args=(pid_id, master, stdout), daemon=True).start()
        # Each pump owns its descriptor of the terminal, so neither can write to a reused fd.
        threading.Thread(target=pump_input, args=(os.dup(master), stdin), daemon=True).start()
    else:
        for fd in {stdin, stdout, stderr}:
            os.close(fd)
    failure = os.read(r, 4096)
    os.close(r)
    pids[pid] = pid_id
    if failure:
        # exec failed: the child exits 126/127; tell the user why on its stderr.
        try:
            fd = os.open(d + "/stderr" if req.get("stderr") != "stdout" else d + "/stdout", os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"sbx: cannot run %s: %s\n" % (argv[0].encode(errors="replace"), failure))
            os.close(fd)
        except OSError:
            pass
    emit({"ev": "started", "id": pid_id, "pid": pid})


def set_size(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def pump_output(pid_id, master, out):
    # Terminal output -> stdout FIFO, until every holder of the terminal's other end is gone.
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal was hung up
                break
            if not data:
                break
            write_all(out, data)
    except OSError:
        pass
    finally:
        os.close(out)
        terminals.pop(pid_id, None)
        try:
            os.close(master)
        except OSError:
            pass


def pump_input(master, inp):
    # stdin FIFO -> terminal. End of input is the terminal's end-of-file character (^D).
    try:
        while True:
            data = os.read(inp, 65536)
            if not data:
                os.write(master, b"\x04")
                break
            write_all(master, data)
    except OSError:
        pass
    finally:
        os.close(inp)
        os.close(master)


def reap():
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        pid_id = pids.pop(pid, None)
        if pid_id is None:
            continue  # an orphan we adopted as pid 1
        if os.WIFSIGNALED(status):
            emit({"ev": "exited", "id": pid_id, "signal": os.WTERMSIG(status)})
        else:
            emit({"ev": "exited", "id": pid_id, "code": os.WEXITSTATUS(status)})


def handle(line):
    req = json.loads(line)
    op = req.get("op")
    if op == "exec":
        start(req)
    elif op == "signal":
        for pid, pid_id in pids.items():
            if pid_id == req["id"]:
                try:
                    os.killpg(pid, req["signal"])
                except ProcessLookupError:
                    try:
                        os.kill(pid, req["signal"])
                    except ProcessLookupError:
                        pass
    elif op == "resize":
        master = terminals.get(req["id"])
        if master is not None:
            try:
                set_size(master, req["rows"], req["cols"])
            except OSError:
                pass


def main():
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    emit({"ev": "ready"})
    buf = b""
    while True:
        try:
            readable, _, _ = select.select([ctl, wake_r], [], [])
        except InterruptedError:
            readable = [wake_r]
        if wake_r in readable:
            try:
                os.read(wake_r, 4096)
            except BlockingIOError:
                pass
            reap()
        if ctl in readable:
            chunk = os.read(ctl, 65536)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    try:
                        handle(line)
                    except Exception as e:  # a bad request must not kill the sandbox
                        emit({"ev": "error", "error": str(e)})
            reap()


main()
