"""Stage 2 of a sandbox run (the runner): install the audit-hook guard, then run the
user's program.

Started by the launcher (``launcher.py``, stage 1) with ``execve`` as
``python -s -P -B runner.py <cfg_fd> <status_fd>``, after the kernel layers are in
place, with an environment built from scratch.  It installs ``sys.addaudithook`` guard
(processes, network, files, ctypes and other escape hatches, forged code objects) unless
the configuration switches it off for a test of the kernel layers, runs the program
(``mode == "run"``) or defines it and calls one function (``mode == "call"``), and
appends status records (``started``, ``return``, ``error``/``blocked``...) to the
status descriptor.

One job, kept in one file on purpose: the guard's functions are recognised by this
file's name (so they can refuse being modified and their frames are hidden from user
tracebacks), and the runner cannot import helpers (``-P``, and no import path of the
project inside the sandbox).  Standard library only, Python 3.11+; the parent never
imports this file.
"""

import os
import sys

MSG_PROC = "blocked: creating processes is not allowed in the sandbox"
MSG_NET = "blocked: network access is not allowed in the sandbox"
MSG_CTYPES = "blocked: ctypes is not allowed in the sandbox"


def emit(fd, obj):
    import json
    data = (json.dumps(obj, separators=(",", ":")) + "\n").encode("ascii")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def make_emit_flat():
    """Writer for flat records of str/bool/None values that does not depend on json's
    pure-Python encoder (which looks builtins up at call time)."""
    import json.encoder
    quote = json.encoder.encode_basestring_ascii  # C implementation when available

    def emit_flat(fd, rec, _quote=quote, _type=type, _str=str, _join=",".join,
                  _write=os.write, _mv=memoryview):
        parts = []
        for key, value in rec.items():
            if value is None or value is False or value is True:
                text = "null" if value is None else ("true" if value else "false")
            else:
                text = _quote(_str(value) if _type(value) is not _str else value)
            parts.append(_quote(key) + ":" + text)
        view = _mv(("{" + _join(parts) + "}\n").encode("ascii"))
        while view:
            view = view[_write(fd, view):]
    return emit_flat


emit_flat = make_emit_flat()


def read_cfg(fd):
    import json
    chunks, off = [], 0
    while True:
        chunk = os.pread(fd, 1 << 20, off)
        if not chunk:
            break
        chunks.append(chunk)
        off += len(chunk)
    data = b"".join(chunks)
    return json.loads(data)


def _here():
    """Marker whose code object names this file, as the interpreter compiled it."""


RUNNER_FILE = _here.__code__.co_filename


class SandboxViolation(PermissionError):
    """Raised inside the sandbox when code attempts a forbidden operation."""


SandboxViolation.__module__ = "sandbox"


def resolve(path, base, _lstat=os.lstat, _readlink=os.readlink, _OSError=OSError,
            _S_IFMT=0o170000, _S_IFLNK=0o120000):
    """Canonical absolute form of ``path`` (an exact str): like os.path.realpath,
    but only C primitives bound at definition time are used."""
    if path[:1] != "/":
        path = base + "/" + path
    todo = path.split("/")
    todo.reverse()
    out = ""
    links = 0
    while todo:
        part = todo.pop()
        if part == "" or part == ".":
            continue
        if part == "..":
            out = out[:out.rfind("/")] if out else ""
            continue
        cand = out + "/" + part
        try:
            st = _lstat(cand)
        except _OSError:
            out = cand
            continue
        if st.st_mode & _S_IFMT == _S_IFLNK:
            links += 1
            if links > 40:
                return None
            try:
                target = _readlink(cand)
            except _OSError:
                return None
            if target[:1] == "/":
                out = ""
            more = target.split("/")
            more.reverse()
            todo.extend(more)
        else:
            out = cand
    return out or "/"


def install_guard(cfg):
    import posix, types, stat
    import pathlib
    wd = cfg["workdir"]
    V = SandboxViolation

    def stub_fork_exec(*args, **kwargs):
        raise V(MSG_PROC)
    if "_posixsubprocess" not in sys.modules:
        stub = types.ModuleType("_posixsubprocess")
        stub.fork_exec = stub_fork_exec
        sys.modules["_posixsubprocess"] = stub
    else:  # already loaded by site customisation: neutralise it
        sys.modules["_posixsubprocess"].fork_exec = stub_fork_exec

    cwd0 = posix.getcwd()
    prefixes = set()
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        r = resolve(p, cwd0)
        if r:
            prefixes.add(r)
    roots = set(prefixes)
    for p in sys.path:
        r = resolve(p or ".", cwd0)
        if r and any(r == q or r.startswith(q.rstrip("/") + "/") for q in prefixes):
            roots.add(r)
    for p in cfg["read_extra"] + ["/proc/self"]:
        r = resolve(p, cwd0)
        if r:
            roots.add(r)
    read_roots = tuple(sorted(r.rstrip("/") + "/" for r in roots))
    write_exact = frozenset(("/dev/null", "/dev/full", "/dev/stdout", "/dev/stderr"))
    wd_slash = wd.rstrip("/") + "/"
    pathlike_types = tuple({pathlib.PurePath, pathlib.PurePosixPath, pathlib.Path,
                            pathlib.PosixPath, os.DirEntry})

    # kinds
    DENY, OPEN, WRITE, LINK, SOCKET, KILL, KILLPG, IMPORT, SETATTR, FUNC = range(10)
    msg_limits = "blocked: changing resource limits or namespaces is not allowed in the sandbox"
    table = {}
    for ev in ("os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
               "subprocess.Popen", "os.startfile", "_posixsubprocess.fork_exec", "pty.spawn"):
        table[ev] = (DENY, MSG_PROC)
    for ev in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
               "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
               "socket.getnameinfo", "socket.sethostname", "urllib.Request",
               "http.client.connect", "ftplib.connect", "smtplib.connect", "imaplib.open",
               "poplib.connect", "nntplib.connect", "telnetlib.Telnet.open", "webbrowser.open"):
        table[ev] = (DENY, MSG_NET)
    for ev in ("resource.setrlimit", "resource.prlimit", "os.unshare", "os.setns",
               "sys.remote_exec"):
        table[ev] = (DENY, msg_limits)
    # Forged bytecode can corrupt the interpreter's memory and so switch this hook off:
    # no code object may come from anywhere but the compiler.  types.CodeType(...) and
    # code.replace() raise code.__new__; marshal.load(s) (and _imp.get_frozen_object with
    # data, which unmarshals through the same path) raise marshal.load(s).  Imports after
    # this point compile from source (see prepare_imports), so nothing legitimate
    # unmarshals any more.
    msg_code = "blocked: constructing code objects is not allowed in the sandbox"
    for ev in ("code.__new__", "marshal.loads", "marshal.load"):
        table[ev] = (DENY, msg_code)
    table["function.__new__"] = (FUNC, None)
    for ev in ("gc.get_objects", "gc.get_referrers", "gc.get_referents"):
        table[ev] = (DENY, "blocked: gc object introspection is not allowed in the sandbox")
    table["os.symlink"] = (DENY, "blocked: creating symlinks is not allowed in the sandbox")
    table["open"] = (OPEN, None)
    # event -> ((path arg index, dir_fd arg index or None), ...)
    for ev, spec in (
        ("os.remove", ((0, 1),)), ("os.rmdir", ((0, 1),)), ("os.mkdir", ((0, 2),)),
        ("os.chmod", ((0, 2),)), ("os.chown", ((0, 3),)), ("os.utime", ((0, 3),)),
        ("os.truncate", ((0, None),)), ("os.chflags", ((0, None),)),
        ("os.setxattr", ((0, None),)), ("os.removexattr", ((0, None),)),
        ("os.rename", ((0, 2), (1, 3))), ("shutil.copyfile", ((1, None),)),
        ("shutil.copymode", ((1, None),)), ("shutil.copystat", ((1, None),)),
        ("shutil.copytree", ((1, None),)), ("shutil.rmtree", ((0, 1),)),
        ("shutil.move", ((0, None), (1, None))), ("shutil.chown", ((0, None),)),
        ("shutil.make_archive", ((0, None),)),
    ):
        table[ev] = (WRITE, spec)
    table["os.link"] = (LINK, ((0, 2), (1, 3)))
    table["socket.__new__"] = (SOCKET, None)
    table["os.kill"] = (KILL, None)
    table["os.killpg"] = (KILLPG, None)
    table["import"] = (IMPORT, frozenset((
        "ctypes", "_ctypes", "_posixsubprocess", "_xxsubinterpreters", "_interpreters",
        "_xxinterpchannels", "_interpchannels", "_interpqueues", "_testcapi",
        "_testinternalcapi", "_testmultiphase", "_testsinglephase", "_testbuffer",
        "_testimportmultiple", "_testclinic", "_testexternalinspection", "_remote_debugging")))
    table["object.__setattr__"] = (SETATTR, None)
    table["object.__delattr__"] = (SETATTR, None)

    def to_str(p, _type=type, _str=str, _bytes=bytes, _int=int, _join="".join,
               _decode=bytes.decode, _types=pathlike_types, _V=V, _issubclass=issubclass):
        """Exact-str form of a path argument (None for an int fd), computed without
        calling any method that user code could have overridden.  Only the real type
        is consulted (isinstance() could be fooled by a fake __class__)."""
        t = _type(p)
        if t is _str:
            return p
        if t is _bytes:
            return _decode(p, "utf-8", "surrogateescape")
        for k in _types:  # identity, not ==: a metaclass could override __eq__
            if t is k:
                p = p.__fspath__()
                t = _type(p)
                if t is _str:
                    return p
                if t is _bytes:
                    return _decode(p, "utf-8", "surrogateescape")
                raise _V("blocked: unsupported path object")
        if _issubclass(t, _str):
            return _join((p,))  # str subclass -> exact copy of its character data
        if _issubclass(t, _bytes):
            return _decode(p, "utf-8", "surrogateescape")
        if _issubclass(t, _int):
            return None
        raise _V("blocked: unsupported path object")

    def norm_fd(fd, _readlink=posix.readlink, _resolve=resolve, _OSError=OSError):
        try:
            target = _readlink("/proc/self/fd/%d" % fd)
        except _OSError:
            return None
        return _resolve(target, "/") if target[:1] == "/" else None

    def locate(p, dir_fd, _to_str=to_str, _getcwd=posix.getcwd, _resolve=resolve,
               _norm_fd=norm_fd, _int_value=int.__int__, _OSError=OSError):
        """Resolved absolute path for (path, dir_fd); None when it cannot be determined."""
        s = _to_str(p)
        if s is None:  # a file descriptor (checked by its real type in to_str)
            return _norm_fd(_int_value(p))
        if s[:1] != "/" and dir_fd is not None and dir_fd != -1:
            base = _norm_fd(_int_value(dir_fd))
            if base is None:
                return None
        else:
            try:
                base = _getcwd()
            except _OSError:
                return None
        return _resolve(s, base)

    def inside(r, _wd=wd, _wd_slash=wd_slash):
        return r is not None and (r == _wd or r.startswith(_wd_slash))

    def check_write(args, spec, _locate=locate, _inside=inside, _V=V, _len=len, _repr=repr):
        for idx, fd_idx in spec:
            if idx >= _len(args):
                continue
            p = args[idx]
            if p is None:  # e.g. shutil.unpack_archive(extract_dir=None) -> cwd
                p = "."
            dir_fd = args[fd_idx] if fd_idx is not None and fd_idx < _len(args) else None
            if not _inside(_locate(p, dir_fd)):
                raise _V("blocked: writing outside the sandbox directory is not allowed: %s"
                         % (_repr(p)[:200],))

    def check_open(args, _to_str=to_str, _resolve=resolve, _getcwd=posix.getcwd,
                   _inside=inside, _V=V, _roots=read_roots, _exact=write_exact,
                   _stat=posix.stat, _OSError=OSError, _isdir=stat.S_ISDIR,
                   _WMASK=os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                   _int=int, _str=str, _type=type, _repr=repr):
        path, mode, flags = args[0], args[1], args[2]
        s = _to_str(path)
        if s is None:  # open(fd): the descriptor was checked when it was opened
            return
        writing = _type(flags) is _int and (flags & _WMASK) != 0
        if _type(mode) is _str:
            for ch in mode:
                if ch in "wax+":
                    writing = True
        if s[:1] != "/":
            if mode is None and ".." in s.split("/"):
                # os.open() may carry an invisible dir_fd: refuse climbing out of it
                raise _V("blocked: relative paths with '..' are not allowed in os.open()")
            try:
                base = _getcwd()
            except _OSError:
                raise _V("blocked: cannot resolve path %s" % (_repr(s)[:200],))
        else:
            base = "/"
        r = _resolve(s, base)
        if r is None:
            raise _V("blocked: cannot resolve path %s" % (_repr(s)[:200],))
        if _inside(r):
            return
        if writing:
            if r in _exact or s in _exact:
                return
            raise _V("blocked: writing outside the sandbox directory is not allowed: %s"
                     % (_repr(s)[:200],))
        if mode is None:  # os.open() of a directory outside: could serve as a dir_fd
            try:
                if _isdir(_stat(r).st_mode):
                    raise _V("blocked: opening directories outside the sandbox is not allowed: %s"
                             % (_repr(s)[:200],))
            except _OSError:
                pass
        rs = r + "/"
        for root in _roots:
            if rs.startswith(root):
                return
        raise _V("blocked: reading files outside the sandbox is not allowed: %s"
                 % (_repr(s)[:200],))

    def check_link(args, spec, _locate=locate, _inside=inside, _V=V, _len=len):  # hard links
        for idx, fd_idx in spec:
            dir_fd = args[fd_idx] if fd_idx < _len(args) else None
            if not _inside(_locate(args[idx], dir_fd)):
                raise _V("blocked: creating links to or from outside the sandbox directory "
                         "is not allowed")

    def hook(event, args, _get=table.get, _V=V, _DENY=DENY, _OPEN=OPEN, _WRITE=WRITE,
             _LINK=LINK, _SOCKET=SOCKET, _KILL=KILL, _KILLPG=KILLPG, _IMPORT=IMPORT,
             _SETATTR=SETATTR, _FUNC=FUNC, _check_open=check_open, _check_write=check_write,
             _check_link=check_link, _getpid=posix.getpid, _getpgid=posix.getpgid,
             _AF_UNIX=1, _type=type, _int=int, _str=str, _FunctionType=types.FunctionType,
             _partition=str.partition, _issubclass=issubclass, _here=RUNNER_FILE,
             _ctypes_msg=MSG_CTYPES, _net_msg=MSG_NET):
        spec = _get(event)
        if spec is None:
            if event[:7] == "ctypes.":
                raise _V(_ctypes_msg)
            return
        kind = spec[0]
        if kind == _OPEN:
            _check_open(args)
        elif kind == _SETATTR:
            obj = args[0]
            if obj is _V or (_type(obj) is _FunctionType
                             and obj.__code__.co_filename == _here):
                raise _V("blocked: modifying the sandbox guard is not allowed")
        elif kind == _FUNC:
            # FunctionType(code, ...) around the guard's own code objects would give user
            # code a copy of a guard function with defaults of its choosing.
            if args[0].co_filename == _here:
                raise _V("blocked: copying the sandbox guard's functions is not allowed")
        elif kind == _DENY:
            raise _V(spec[1])
        elif kind == _WRITE:
            _check_write(args, spec[1])
        elif kind == _IMPORT:
            name = args[0]
            if not _issubclass(_type(name), _str):
                raise _V("blocked: invalid import")
            top = _partition(name, ".")[0]
            if top in spec[1]:
                raise _V("blocked: importing %s is not allowed in the sandbox" % (top,))
        elif kind == _SOCKET:
            family = args[1]  # a C int converted by the socket module
            if _type(family) is not _int or family != _AF_UNIX:
                raise _V(_net_msg)
        elif kind == _KILL:
            pid = args[0]
            if _type(pid) is not _int or (pid != _getpid() and pid != 0):
                raise _V("blocked: signalling other processes is not allowed in the sandbox")
        elif kind == _KILLPG:
            if _type(args[0]) is not _int or args[0] != _getpgid(0):
                raise _V("blocked: signalling other processes is not allowed in the sandbox")
        elif kind == _LINK:
            _check_link(args, spec[1])

    sys.addaudithook(hook)


def strip_sandbox_frames(te, seen):
    """Drop the bootstrap's and the guard's frames from a TracebackException tree."""
    import traceback
    if te is None or id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if f.filename != RUNNER_FILE])
    strip_sandbox_frames(te.__cause__, seen)
    strip_sandbox_frames(te.__context__, seen)
    for sub in getattr(te, "exceptions", None) or ():
        strip_sandbox_frames(sub, seen)


def report_exception(e, st_fd, _type=type, _issubclass=issubclass, _id=id, _str=str,
                     _set=set, _list=list, _V=SandboxViolation, _MemoryError=MemoryError,
                     _BaseException=BaseException, _stderr=sys.__stderr__, _emit=emit_flat,
                     _strip=strip_sandbox_frames):
    """Print the user's traceback (without bootstrap frames) and record the error.
    Builtins are bound as defaults: user code may have replaced them."""
    import traceback
    te = None
    name = "exception"
    try:
        name = _str(_type(e).__name__)
        te = traceback.TracebackException(_type(e), e, e.__traceback__, compact=True)
        _strip(te, _set())
        text = "".join(te.format())
    except _BaseException:
        text = name + "\n"
    try:
        _stderr.write(text)
        _stderr.flush()
    except _BaseException:
        pass
    blocked, x, seen = None, e, _set()
    try:
        while x is not None and _id(x) not in seen:
            seen.add(_id(x))
            if _issubclass(_type(x), _V):
                blocked = _str(x.args[0]) if x.args else "blocked: operation not allowed"
                break
            x = x.__cause__ or x.__context__
    except _BaseException:
        pass
    try:
        line = _list(te.format_exception_only())[-1].strip()
    except _BaseException:
        line = name
    _emit(st_fd, {"exc_type": name, "error": line[:1000], "blocked": blocked,
                  "memory": _issubclass(_type(e), _MemoryError)})



def prepare_imports():
    """Make every later import compile from source, so that the guard can refuse marshal.

    Cached ``.pyc`` files and frozen modules reach the interpreter through
    ``marshal.loads``, which the guard refuses (it cannot tell a cached file from forged
    bytecode).  A pycache prefix that can never exist hides the caches (``-B`` already
    prevents writing them), and frozen modules other than the import system itself are
    turned off.  ``typing`` (imported by nearly every HumanEval program) is loaded first,
    from its cache, to keep those runs fast.
    """
    import _imp
    import typing  # noqa: F401
    sys.pycache_prefix = "/dev/null/sandbox-no-pycache"  # below a device: never a directory
    override = getattr(_imp, "_override_frozen_modules_for_tests", None)
    if override is not None:
        override(-1)


def stage2(cfg, cfg_fd, st_fd):
    import builtins, json, linecache, traceback  # noqa: F401  (loaded before the guard)
    try:
        os.close(cfg_fd)
    except OSError:
        pass
    emit(st_fd, {"started": True})
    wd = cfg["workdir"]
    os.chdir(wd)
    sys.argv = ["main.py"]
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True, errors="backslashreplace")
        except Exception:
            pass
    src = cfg["code"]
    filename = "main.py"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    mode = cfg["mode"]
    ns = {"__name__": "__main__" if mode == "run" else "__sandbox__",
          "__builtins__": builtins, "__file__": filename}
    args, kwargs, fname = cfg.get("args") or [], cfg.get("kwargs") or {}, cfg.get("function")
    peer_fd, wire = cfg.get("peer_fd"), None
    if peer_fd is not None:  # a checked run: the wire to the other child (see wire.py)
        wire = {"__name__": "sandbox_wire"}
        exec(compile(cfg["wire_source"], cfg["wire_file"], "exec"), wire)
        if mode == "call":
            ns["__peer__"] = wire["Peer"](peer_fd)
    if cfg["audit"]:
        prepare_imports()
        install_guard(cfg)
    del cfg
    try:
        if mode == "serve":  # the program under test: load it, then answer the judge's calls
            load_error = None
            try:
                code = compile(src, filename, "exec")
            except SyntaxError as e:
                load_error = ("compile", e)
            else:
                try:
                    exec(code, ns)
                except BaseException as e:  # SystemExit included: the program did not load
                    load_error = ("run", e)
            del src
            wire["serve"](peer_fd, ns, load_error, filename)
            return
        code = compile(src, filename, "exec")
        del src
        exec(code, ns)
        if mode == "call":
            fn = ns.get(fname)
            if fn is None:
                raise NameError("name %r is not defined by the source" % (fname,))
            if not callable(fn):
                raise TypeError("%r is not callable" % (fname,))
            value = fn(*args, **kwargs)
            try:
                emit(st_fd, {"return": value})
            except (TypeError, ValueError) as e:
                raise TypeError("return value of %s() is not JSON-serializable: %s"
                                % (fname, e)) from None
            except OSError as e:
                raise OSError("return value of %s() is too large to transfer: %s"
                              % (fname, e)) from None
    except SystemExit:
        raise
    except BaseException as e:
        report_exception(e, st_fd)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(1)


def main():
    """Entry point: ``runner.py <cfg_fd> <status_fd>``."""
    cfg_fd, st_fd = int(sys.argv[1]), int(sys.argv[2])
    stage2(read_cfg(cfg_fd), cfg_fd, st_fd)


if __name__ == "__main__":
    main()
