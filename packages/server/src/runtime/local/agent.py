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
#                                 Files (each answered by {"ev":"fs","id":..,"result":..} or
#                                 {"ev":"fs","id":..,"error":{"kind":..,"message":..}}):
#                                 {"op":"stat"|"list","id":..,"path":..}
#                                 {"op":"mkdir","id":..,"path":..,"parents":bool}
#                                 {"op":"remove","id":..,"path":..,"recursive":bool}
#                                 {"op":"read","id":..,"path":..}: opens the file and answers
#                                   {"fd":n,"size":n,"dev":"..","ino":".."}; the server reopens that open
#                                   file through /proc/<agent>/fd/n and reads it, then sends
#                                 {"op":"release","id":..,"fd":n}: closes it
#                                 {"op":"upload","id":..,"upload":..,"path":..}: creates a temporary file
#                                   beside path, answers like "read"; the server reopens and writes it
#                                 {"op":"upload_end","id":..,"upload":<upload's id>,"commit":bool}:
#                                   renames the temporary file onto path (or removes it)
#                                 {"op":"watch","id":..,"path":..,"recursive":bool}: answers once the
#                                   inotify watch is in place, then sends {"ev":"watch","id":..,"events":
#                                   [{"type":"create"|"modify"|"delete"|"rename"|"overflow","paths":[..]}]}
#                                   until {"op":"unwatch","id":..}
# File operations run in a few worker threads started at boot (a fork bomb that has used every
# pid of the sandbox cannot keep them from answering), as the sandbox user, inside the sandbox's root: paths,
# `..` and symlinks resolve there, so no path can reach the host. File contents never pass
# through the agent: the server reopens the file the agent opened (the same file, whatever
# happens to its path later) and checks it. The agent makes itself non-dumpable first, so
# sandboxed code (same uid) can neither ptrace it nor reach its /proc fds or memory.
# A process's stdio are FIFOs in its "dir": stdin, stdout, stderr. The dir is the server's (root's,
# 0711) with an unguessable name in a directory the sandbox cannot list, so no other process can
# find the FIFOs by name; the agent opens them before it forks, and the server unlinks them as
# soon as the agent says "started" or "failed". That hides names, not pipes: every process of
# the sandbox has the same uid, so any of them can open a running command's stdio (or its
# terminal) through /proc/<pid>/fd. With "pty", the process
# gets a pseudo-terminal (from the sandbox's own devpts) as its controlling terminal and
# stdin/stdout/stderr; the agent copies between the terminal and the FIFOs.
import errno
import fcntl
import ctypes
import json
import os
import select
import shutil
import signal
import stat as statmod
import struct
import queue
import sys
import termios
import threading


def close_inherited():
    """Closes every descriptor above stderr this process was started with: whatever the server's
    own parent or bwrap left open must not reach sandboxed code."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            try:
                os.close(fd)
            except OSError:
                pass  # the listing's own descriptor, already closed


close_inherited()
events = os.open("/.sbx/events", os.O_WRONLY)
ctl = os.open("/.sbx/ctl", os.O_RDWR)  # RDWR: never sees EOF when the server reopens
pids = {}  # pid -> process id
terminals = {}  # process id -> pty master fd
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20


def write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


emit_lock = threading.Lock()


def emit(obj):
    data = (json.dumps(obj) + "\n").encode()
    with emit_lock:
        write_all(events, data)


# --- files -------------------------------------------------------------------------------

ERRNO_KINDS = {
    errno.ENOENT: "not_found",
    errno.EISDIR: "is_a_directory",
    errno.ENOTDIR: "not_a_directory",
    errno.ENOTEMPTY: "directory_not_empty",
    errno.EEXIST: "already_exists",
    errno.EACCES: "permission_denied",
    errno.EPERM: "permission_denied",
    errno.EROFS: "permission_denied",
    errno.ENOSPC: "no_space",
    errno.EDQUOT: "no_space",
}
uploads = {}  # upload id -> fd of its temporary file
open_files = {}  # fd -> True: files opened by "read", until "release"


class FsError(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def fs_error(e, path):
    if isinstance(e, FsError):
        return {"kind": e.kind, "message": str(e)}
    if isinstance(e, OSError):
        return {"kind": ERRNO_KINDS.get(e.errno, "other"), "message": "%s: %s" % (path, e.strerror or e)}
    return {"kind": "other", "message": "%s: %s" % (path, e)}


def describe(path, st):
    mode = st.st_mode
    if statmod.S_ISLNK(mode):
        kind = "symlink"
    elif statmod.S_ISDIR(mode):
        kind = "directory"
    elif statmod.S_ISREG(mode):
        kind = "file"
    else:
        kind = "other"
    info = {
        "name": os.path.basename(path) or "/",
        "path": path,
        "type": kind,
        "size": st.st_size,
        "mode": statmod.S_IMODE(mode),
        "mtime_ms": st.st_mtime_ns // 1000000,
    }
    if kind == "symlink":
        try:
            info["target"] = os.readlink(path)
        except OSError:
            pass
    return info


def fs_stat(req):
    return describe(req["path"], os.lstat(req["path"]))


def fs_list(req):
    path = req["path"]
    if not statmod.S_ISDIR(os.stat(path).st_mode):
        raise FsError("not_a_directory", "%s: not a directory" % path)
    out = []
    with os.scandir(path) as entries:
        for entry in entries:
            try:
                out.append(describe(os.path.join(path, entry.name), entry.stat(follow_symlinks=False)))
            except FileNotFoundError:
                pass  # removed while listing
    out.sort(key=lambda e: e["name"])
    return out


def fs_mkdir(req):
    path = req["path"]
    if req.get("parents"):
        make_parents(path)
    else:
        os.mkdir(path)
    return None


def make_parents(path):
    """makedirs, telling a path that exists as a file from a parent that is a file."""
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError as e:
        if e.filename == path:
            raise FsError("already_exists", "%s: exists and is not a directory" % path)
        raise FsError("not_a_directory", "%s: a parent (%s) is not a directory" % (path, e.filename))


def fs_remove(req):
    path = req["path"]
    st = os.lstat(path)
    if statmod.S_ISDIR(st.st_mode):
        if req.get("recursive"):
            def fail(_fn, _p, exc):
                raise exc[1] if isinstance(exc, tuple) else exc
            shutil.rmtree(path, onerror=fail)
        else:
            os.rmdir(path)
    else:
        os.unlink(path)
    return None


SPECIAL_KINDS = ((statmod.S_ISFIFO, "a FIFO"), (statmod.S_ISCHR, "a character device"),
                 (statmod.S_ISBLK, "a block device"), (statmod.S_ISSOCK, "a socket"))


def check_regular(path, mode):
    if statmod.S_ISDIR(mode):
        raise FsError("is_a_directory", "%s: is a directory" % path)
    for test, what in SPECIAL_KINDS:
        if test(mode):
            raise FsError("permission_denied", "%s: is %s, not a regular file; only regular files move "
                          "through the files API (use exec to read it)" % (path, what))


def open_regular(path, flags):
    """Refuses special files before opening them (opening a FIFO waits for a writer, a device may
    do anything); O_NONBLOCK and the check after it cover a path swapped in between."""
    check_regular(path, os.stat(path).st_mode)
    fd = os.open(path, flags | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        check_regular(path, os.fstat(fd).st_mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


def identity(fd):
    st = os.fstat(fd)
    # Strings: a JSON number loses precision past 2**53, and inode numbers can be that large.
    return {"fd": fd, "size": st.st_size, "dev": str(st.st_dev), "ino": str(st.st_ino)}


def fs_read(req):
    """Opens the file for the server, which reopens this open file through /proc/1/fd from
    the host and reads it itself; the agent keeps it open until "release"."""
    fd = open_regular(req["path"], os.O_RDONLY)
    open_files[fd] = True
    return identity(fd)


def fs_release(req):
    fd = req.get("fd")
    if open_files.pop(fd, None):
        os.close(fd)
    return None


def upload_temp(path, upload):
    return os.path.join(os.path.dirname(path) or "/", ".%s.sbx-upload-%s" % (os.path.basename(path), upload))


def fs_upload(req):
    """Creates the upload's temporary file beside path, for the server to reopen through
    /proc/1/fd and write; "upload_end" renames it onto path (or removes it)."""
    path = req["path"]
    upload = str(req["upload"])
    if not upload.isalnum():
        raise FsError("other", "bad upload id")
    parent = os.path.dirname(path) or "/"
    try:
        if statmod.S_ISDIR(os.stat(path).st_mode):
            raise FsError("is_a_directory", "%s: is a directory" % path)
    except FileNotFoundError:
        pass
    try:
        make_parents(parent)
    except FsError as e:
        raise FsError("not_a_directory", str(e))
    fd = os.open(upload_temp(path, upload), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    uploads[upload] = fd
    return identity(fd)


def fs_upload_end(req):
    fd = uploads.pop(str(req["upload"]), None)
    if fd is None:
        raise FsError("other", "no such upload")
    os.close(fd)
    path = req["path"]
    temp = upload_temp(path, req["upload"])
    if not req.get("commit"):
        try:
            os.unlink(temp)
        except OSError:
            pass
        return None
    try:
        os.chmod(temp, statmod.S_IMODE(os.stat(path).st_mode))  # keep an existing file's mode
    except FileNotFoundError:
        pass
    os.rename(temp, path)
    return None


# --- watching (inotify through libc) -------------------------------------------------------

IN_MODIFY, IN_ATTRIB, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x4, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED, IN_ONLYDIR, IN_ISDIR = 0x4000, 0x8000, 0x01000000, 0x40000000
WATCH_MASK = IN_MODIFY | IN_ATTRIB | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
EVENT_HEADER = struct.Struct("iIII")
UPLOAD_MARK = ".sbx-upload-"
watches = {}  # watch id -> write end of its stop pipe
pending_watches = set()  # ids of watches queued or being set up: only these can be unwatched early
unwatched = set()  # pending ids whose unwatch came before their watch was in place
watch_lock = threading.Lock()
libc = None


def inotify_call(fn, *args):
    global libc
    if libc is None:
        libc = ctypes.CDLL(None, use_errno=True)
    r = getattr(libc, fn)(*args)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def upload_target(name):
    """The file an upload's temporary name (".name.sbx-upload-<id>") stands for, else None."""
    at = name.find(UPLOAD_MARK)
    return name[1:at] if name.startswith(".") and at > 1 else None


class Watch:
    """One inotify instance: a directory (with `recursive`, every directory below it) or one
    file (watched through its parent, so a file replaced by rename stays watched)."""

    def __init__(self, wid, path, recursive):
        self.id = wid
        self.recursive = recursive
        root = os.path.realpath(path)
        st = os.stat(root)
        self.only = None if statmod.S_ISDIR(st.st_mode) else os.path.basename(root)
        self.root = root if self.only is None else (os.path.dirname(root) or "/")
        self.fd = inotify_call("inotify_init1", os.O_NONBLOCK | os.O_CLOEXEC)
        self.dirs = {}  # watch descriptor -> directory path
        # Rename cookies of SDK uploads moving into place; kept across reads, since the two
        # halves of a rename can arrive in different ones.
        self.upload_moves = set()
        try:
            self.add(self.root)
            if recursive and self.only is None:
                self.add_tree(self.root, [])
        except BaseException:
            os.close(self.fd)
            raise
        self.stop_r, self.stop_w = os.pipe2(os.O_CLOEXEC)

    def add(self, path):
        wd = inotify_call("inotify_add_watch", self.fd, os.fsencode(path), WATCH_MASK | IN_ONLYDIR)
        self.dirs[wd] = path

    def add_tree(self, top, created):
        """Watches every directory below `top`; names found are added to `created` (entries made
        before their directory was watched would otherwise go unreported)."""
        for parent, subdirs, files in os.walk(top):
            for name in subdirs:
                sub = os.path.join(parent, name)
                created.append(sub)
                try:
                    self.add(sub)
                except OSError:
                    pass  # gone already, or not readable
            created.extend(os.path.join(parent, f) for f in files)

    def run(self):
        try:
            while True:
                readable, _, _ = select.select([self.fd, self.stop_r], [], [])
                if self.stop_r in readable:
                    return
                try:
                    data = os.read(self.fd, 1 << 16)
                except BlockingIOError:
                    continue
                events = self.decode(data)
                if events:
                    emit({"ev": "watch", "id": self.id, "events": events})
        except OSError:
            pass
        finally:
            with watch_lock:
                watches.pop(self.id, None)
                for fd in (self.fd, self.stop_r, self.stop_w):
                    os.close(fd)

    def decode(self, data):
        out = []
        moves = {}  # cookie -> index in out of the "rename" from, this read
        at = 0
        while at < len(data):
            wd, mask, cookie, size = EVENT_HEADER.unpack_from(data, at)
            name = os.fsdecode(data[at + 16:at + 16 + size].rstrip(b"\0"))
            at += 16 + size
            if mask & IN_Q_OVERFLOW:
                out.append({"type": "overflow", "paths": []})
                continue
            parent = self.dirs.get(wd)
            if mask & IN_IGNORED:
                self.dirs.pop(wd, None)
                continue
            if parent is None:
                continue
            if not name:  # the watched directory itself
                if parent == self.root and self.only is None and mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                    out.append({"type": "delete" if mask & IN_DELETE_SELF else "rename", "paths": [parent]})
                continue
            target = upload_target(name)
            if self.only is not None and name != self.only and target != self.only:
                continue
            path = os.path.join(parent, name)
            if target is not None:
                # An SDK upload: its temporary file is not news; its rename into place is a create.
                if mask & IN_MOVED_FROM:
                    if len(self.upload_moves) > 1024:
                        self.upload_moves.clear()
                    self.upload_moves.add(cookie)
                continue
            if mask & IN_CREATE:
                out.append({"type": "create", "paths": [path]})
            elif mask & (IN_MODIFY | IN_ATTRIB):
                if not (out and out[-1] == {"type": "modify", "paths": [path]}):
                    out.append({"type": "modify", "paths": [path]})
            elif mask & IN_DELETE:
                out.append({"type": "delete", "paths": [path]})
            elif mask & IN_MOVED_FROM:
                moves[cookie] = len(out)
                out.append({"type": "rename", "paths": [path]})
            elif mask & IN_MOVED_TO:
                index = moves.pop(cookie, -1)
                if cookie in self.upload_moves:
                    self.upload_moves.discard(cookie)
                    out.append({"type": "create", "paths": [path]})
                elif index >= 0:
                    out[index]["paths"].append(path)
                else:
                    out.append({"type": "rename", "paths": [path]})
            if self.recursive and mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                created = []
                try:
                    self.add(path)
                    self.add_tree(path, created)
                except OSError:
                    pass
                out.extend({"type": "create", "paths": [p]} for p in created)
        return out


def fs_watch(req):
    try:
        return start_watch(req)
    finally:  # in place or failed: no longer pending either way
        with watch_lock:
            pending_watches.discard(req["id"])
            unwatched.discard(req["id"])


def start_watch(req):
    try:
        w = Watch(req["id"], req["path"], bool(req.get("recursive")))
    except OSError as e:
        if e.errno in (errno.EMFILE, errno.ENOSPC) and e.filename is None:
            # inotify's limits are per host user, which every sandbox shares (not the disk).
            raise FsError("other", "%s: the machine's inotify limit is reached "
                          "(fs.inotify.max_user_instances / max_user_watches)" % req["path"])
        raise
    with watch_lock:
        if w.id in unwatched:  # the caller gave up while it was being set up
            os.write(w.stop_w, b"x")
        watches[w.id] = w.stop_w
    try:
        threading.Thread(target=w.run, daemon=True).start()
    except RuntimeError:  # no pid left for a thread (a fork bomb): fail this watch, not the agent
        with watch_lock:
            watches.pop(w.id, None)
        for fd in (w.fd, w.stop_r, w.stop_w):
            os.close(fd)
        raise FsError("other", "%s: the sandbox has no process left for a watch (pids limit)" % req["path"])
    return None


def unwatch(req):
    with watch_lock:
        stop = watches.pop(req["id"], None)
        if stop is not None:
            os.write(stop, b"x")
        elif req["id"] in pending_watches:
            unwatched.add(req["id"])  # its watch is still queued or being set up
        # else: a watch that failed (or never was): nothing to stop, nothing to remember


FS_OPS = {
    "stat": fs_stat,
    "list": fs_list,
    "mkdir": fs_mkdir,
    "remove": fs_remove,
    "read": fs_read,
    "upload": fs_upload,
    "upload_end": fs_upload_end,
    "release": fs_release,
    "watch": fs_watch,
}


def run_fs(req):
    try:
        emit({"ev": "fs", "id": req["id"], "result": FS_OPS[req["op"]](req)})
    except Exception as e:
        emit({"ev": "fs", "id": req["id"], "error": fs_error(e, req.get("path", ""))})


# Started at boot, while the sandbox has pids to spare: a thread per call would need a new pid
# for every call, and a fork bomb takes them all.
FS_WORKERS = 8
fs_requests = queue.SimpleQueue()


def fs_worker():
    while True:
        run_fs(fs_requests.get())


def start_fs_workers():
    started = 0
    for _ in range(FS_WORKERS):
        try:
            threading.Thread(target=fs_worker, daemon=True).start()
            started += 1
        except RuntimeError:
            break  # a tiny pids limit: make do with the ones that started
    if started == 0:
        raise RuntimeError("cannot start a file worker thread")


def start(req):
    pid_id = req["id"]
    d = req["dir"]
    opened = []
    try:
        for name, flags in [("stdin", os.O_RDONLY), ("stdout", os.O_WRONLY)] + (
                [] if req.get("stderr") == "stdout" else [("stderr", os.O_WRONLY)]):
            opened.append(os.open(d + "/" + name, flags))
    except OSError as e:
        for fd in opened:
            os.close(fd)
        emit({"ev": "failed", "id": pid_id, "error": "cannot open stdio: %s" % e})
        return
    stdin, stdout = opened[0], opened[1]
    stderr = opened[2] if len(opened) > 2 else stdout
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
    try:
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            pid = os.fork()
        except BaseException:
            os.close(r)
            os.close(w)
            raise
    except BaseException:
        for fd in {stdin, stdout, stderr, master, slave} - {None}:
            os.close(fd)
        raise
    if pid == 0:
        # Why the exec failed goes to the process's own error output, written by the process
        # itself before it exits: its output then ends after that line, like any other output.
        # (Written by the agent once the child had gone, the line raced the end of the stream.)
        error_out = slave if slave is not None else stderr
        doing = "run %s" % argv[0]
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
            error_out = 2
            for sig in (signal.SIGPIPE, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            doing = "change to directory %s" % cwd
            os.chdir(cwd)
            doing = "run %s" % argv[0]
            os.execvpe(argv[0], argv, env)
        except BaseException as e:  # say why exec failed, then die like a shell would
            try:
                signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a gone reader must not change the status
                line = "sbx: cannot %s: %s\n" % (doing, e.strerror if isinstance(e, OSError) and e.strerror else e)
                write_all(error_out, line.encode(errors="replace"))
            finally:
                os._exit(127 if isinstance(e, FileNotFoundError) else 126)
    os.close(w)
    if master is not None:
        os.close(slave)
        if stderr != stdout:
            os.close(stderr)  # a terminal has one output stream
        try:
            start_pumps(pid_id, master, stdin, stdout)
        except BaseException as e:
            # Nothing would copy the terminal (no pid left for a thread): the child must not
            # run on unseen, holding descriptors, while the server hears that it failed.
            stop_child(pid)
            os.close(r)
            emit({"ev": "failed", "id": pid_id, "error": "cannot start the terminal's copiers: %s" % e})
            return
    else:
        for fd in {stdin, stdout, stderr}:
            os.close(fd)
    os.read(r, 1)  # returns once the child has exec'd (the pipe is close-on-exec) or died
    os.close(r)
    pids[pid] = pid_id
    emit({"ev": "started", "id": pid_id, "pid": pid})


def start_pumps(pid_id, master, stdin, stdout):
    """Starts the threads that copy between a terminal and its FIFOs; a started pump owns its
    descriptors. On failure, closes the ones no started pump owns, and raises."""
    # Each pump owns its descriptor of the terminal, so neither can write to a reused fd.
    # The input pump's copy is made first: once started, the output pump may close the
    # master at any moment (a process that exits at once).
    try:
        input_master = os.dup(master)
    except BaseException:
        close_all(master, stdin, stdout)
        raise
    terminals[pid_id] = master
    try:
        threading.Thread(target=pump_output, args=(pid_id, master, stdout), daemon=True).start()
    except BaseException:
        terminals.pop(pid_id, None)
        close_all(master, stdout, input_master, stdin)
        raise
    try:
        threading.Thread(target=pump_input, args=(input_master, stdin), daemon=True).start()
    except BaseException:
        close_all(input_master, stdin)  # the output pump ends (and closes its own) with the child
        raise


def stop_child(pid):
    """Kills a child the server will not hear of (reap() drops it: it is not in `pids`)."""
    for kill in (os.killpg, os.kill):  # its group, if it got as far as setsid
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


def close_all(*fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


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
    if op in FS_OPS:
        if op == "watch":
            with watch_lock:
                pending_watches.add(req["id"])
        fs_requests.put(req)
    elif op == "exec":
        try:
            start(req)
        except Exception as e:  # the server must hear of it, or it waits for "started" forever
            emit({"ev": "failed", "id": req["id"], "error": "cannot start: %s" % e})
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
    elif op == "unwatch":
        unwatch(req)
    elif op == "resize":
        master = terminals.get(req["id"])
        if master is not None:
            try:
                set_size(master, req["rows"], req["cols"])
            except OSError:
                pass


PR_SET_DUMPABLE = 4


def make_undumpable():
    """Sandboxed code runs as the agent's uid: without this it could ptrace the agent, or write
    its memory through /proc/1/mem, and make it hand the server any file it likes. Processes
    the agent starts are dumpable again once they exec."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")


def main():
    make_undumpable()
    start_fs_workers()
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
