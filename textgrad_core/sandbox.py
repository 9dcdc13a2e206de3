"""Sandboxed execution of untrusted, LLM-written Python code.

This module is the single place where model-generated code runs: HumanEval
programs together with their tests, the trainable Python functions of tasks,
and game policies.  It uses only the standard library (plus pydantic for the
result models) and runs every program in a fresh child interpreter.

Public API
----------
``run_code`` / ``arun_code``
    run a program; ``stdout``/``stderr``/exit status come back in a
    :class:`SandboxResult`.
``call_function`` / ``acall_function``
    define ``source`` in the child, call ``function_name(*args, **kwargs)``
    with JSON-transported arguments and return ``(value, result)``.

Errors inside user code never raise in the parent: they are reported through
``SandboxResult.ok`` / ``SandboxResult.error``.  Operations refused by the
sandbox produce an ``error`` that starts with ``"blocked:"``.

Design: layers of defence
-------------------------
Every run starts ``sys.executable`` twice in the same process (``execve``):

*Stage 1 (launcher)* - ``python -I -S`` started with ``start_new_session`` (own
process group, killed as a whole on timeout), an empty environment, ``cwd`` set
to a fresh private temporary directory.  It sets up the kernel-enforced layers,
which are applied best effort; each one that holds is listed in
``SandboxResult.layers``:

``netns``
    ``unshare(CLONE_NEWNET)``: the child gets a network namespace containing
    only a downed loopback device, so no packet can leave it, not even to
    ``127.0.0.1``.
``mountns`` / ``readonly-fs`` / ``tmpfs-workdir`` / ``hide:<dir>``
    ``unshare(CLONE_NEWNS)`` followed by: mount propagation made private;
    the home directories, the parent's working directory (the project, which
    may hold ``.env`` files) and the temp root covered by an empty tmpfs, with
    only the Python installation and the run's temp dir re-exposed through
    bind mounts; the temporary directory
    replaced by a size-capped private tmpfs (``disk_mb``); every other mount
    remounted read-only.  Writes outside the temp dir then fail with ``EROFS``
    whatever the process does.
``uid`` / ``nproc``
    As root: ``setresuid``/``setresgid`` to a fresh, otherwise unused uid from
    a high range (one per run), then ``RLIMIT_NPROC``.  Root ignores
    ``RLIMIT_NPROC``, an unprivileged uid does not, and because the uid is
    unique to the run the limit counts only this sandbox's tasks (threads
    included), so a fork bomb stops after ``max_procs`` tasks.  The uid also
    gives kernel file permissions (nothing root-owned is writable; ``/root``
    stays unreadable) and lets the parent kill every leftover process of the
    run by uid, including ones that escaped the process group with
    ``setsid()``.  Before committing to the uid the launcher checks (with the
    saved uid still 0, so it can step back) that the interpreter can be
    executed under it, and stays root if not.
    Not root: ``unshare(CLONE_NEWUSER | ...)`` (unprivileged user namespaces)
    gives the same network and mount layers, mapping the user's uid onto
    itself so that no capability survives the ``execve``; ``RLIMIT_NPROC`` is
    then per namespace on kernels >= 5.14, or per user on older ones.
``rlimits``
    ``RLIMIT_AS`` (memory_mb), ``RLIMIT_CPU`` (cpu_s; SIGXCPU, then SIGKILL one
    second later), ``RLIMIT_FSIZE`` (max_file_mb), ``RLIMIT_CORE`` = 0 and
    ``RLIMIT_NOFILE`` - these hold for any user.
``no_new_privs``
    ``PR_SET_NO_NEW_PRIVS``, plus ``PR_SET_PDEATHSIG(SIGKILL)`` so that the
    child dies with its parent.

The launcher then ``execve``s *stage 2* with ``-s -P -B`` (the flags that ``-I``
implies, except ``-E``: the environment is built from scratch and contains only
``LANG``/``LC_ALL``, ``PYTHONHASHSEED=0`` (deterministic ``str`` hashing,
which ``-E`` would silently ignore), ``PYTHONUTF8``/``PYTHONIOENCODING``,
``PYTHONDONTWRITEBYTECODE`` and ``HOME``/``TMPDIR`` pointing at the temp dir -
no ``PATH``, nothing inherited from the parent, so no API keys).

*Stage 2 (bootstrap)* installs a ``sys.addaudithook`` guard before any user code
runs - a second, interpreter-level layer that also holds where the kernel
layers are not available (e.g. containers without ``CAP_SYS_ADMIN``):

* processes: ``os.fork``/``forkpty``/``system``/``exec*``/``posix_spawn``/
  ``spawn``, ``subprocess.Popen`` are refused; ``_posixsubprocess`` is
  replaced by a stub whose ``fork_exec`` refuses; signals only to itself;
* network: ``socket`` objects other than ``AF_UNIX``, ``connect``/``bind``/
  ``sendto``/``sendmsg``, ``getaddrinfo``/``gethostbyname``/... and the
  ``urllib``/``http.client``/``ftplib``/``smtplib``/... events are refused;
* files: opening for writing/appending/creating and ``os.remove``/``rename``/
  ``mkdir``/``chmod``/``utime``/``truncate``/``shutil.*`` are refused outside
  the temp dir (paths resolved like the kernel does, symlinks included);
  creating symlinks and hard links to outside files is refused; reading is
  allowed only in the temp dir, the Python installation (``sys.prefix`` and
  friends, site-packages) and a few harmless system files (``/dev/null``,
  ``/dev/urandom``, zoneinfo, ``/proc/self``...);
* escape hatches: ``ctypes``/``_ctypes``, sub-interpreters and the CPython
  test-C-API modules cannot be imported, all ``ctypes.*`` events are refused,
  as are ``code.__new__`` (forged bytecode), ``gc.get_objects``/
  ``get_referrers``/``get_referents``, ``resource.setrlimit``/``prlimit`` and
  ``os.unshare``/``os.setns``;
* tamper resistance: the hook and its helpers look nothing up in (mutable)
  globals or builtins - every function, C primitive and constant they need is
  bound as a default argument, path objects are normalised through C-level
  methods only, and assigning ``__code__``/``__defaults__`` of the guard's
  functions or attributes of its exception class is refused.

An audit hook alone is not a security boundary (a memory-corruption bug in
CPython would bypass it); that is why the kernel layers above are the primary
defence wherever they are available.

Limits, output and cleanup
--------------------------
The parent enforces the wall-clock ``timeout_s``: on expiry it ``SIGKILL``s
the whole process group (and, when the run had its own uid, every process of
that uid).  ``stdout``/``stderr`` are read incrementally and capped at
``max_output_chars`` (the rest is drained and discarded), so a chatty child
cannot exhaust the parent's memory.  Configuration and results travel through
two anonymous (unlinked) temporary files passed as inherited file descriptors,
so they never appear in the temp dir and are independent of ``stdout``.  The
temp dir is removed afterwards.  At most ``MAX_CONCURRENT_SANDBOXES`` children
run at once per event loop.

If the kernel layers make the child fail to start at all (an unusual
filesystem layout), the run is retried once without them; when that works the
degradation is remembered for the process and logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "SandboxLimits",
    "SandboxResult",
    "run_code",
    "arun_code",
    "call_function",
    "acall_function",
    "MAX_CONCURRENT_SANDBOXES",
]

logger = logging.getLogger(__name__)

#: Maximum number of sandbox children running at the same time (per event loop).
MAX_CONCURRENT_SANDBOXES = max(2, 2 * (os.cpu_count() or 1))


class SandboxLimits(BaseModel):
    """Resource limits of one sandbox run."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(5.0, gt=0, description="wall-clock timeout in seconds")
    memory_mb: int = Field(512, ge=32, description="address-space limit (RLIMIT_AS)")
    cpu_s: int = Field(5, ge=1, description="CPU-time limit (RLIMIT_CPU)")
    max_output_chars: int = Field(20000, ge=0, description="stdout/stderr are truncated to this")
    max_file_mb: int = Field(16, ge=1, description="largest file the child may write (RLIMIT_FSIZE)")
    disk_mb: int = Field(64, ge=1, description="size of the private tmpfs temp dir, when available")
    max_procs: int = Field(16, ge=1, description="tasks (processes + threads) of the run (RLIMIT_NPROC)")


class SandboxResult(BaseModel):
    """Outcome of one sandbox run.  Never raised - always returned."""

    ok: bool  # exited 0 without timeout/kill (call_function: and returned a value)
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool
    error: str | None  # short human-readable reason; "blocked: ..." for refused operations
    duration_s: float
    layers: list[str] = Field(default_factory=list)  # isolation layers that were in force


# --------------------------------------------------------------------------------------
# Child-side code.  The config fd holds ``_BOOTSTRAP + b"\0" + json(config)``; the child
# runs ``python -c _LOADER <stage> <cfg_fd> <st_fd>``.  The bootstrap must only use the
# standard library and run on every supported Python (3.11+).
# --------------------------------------------------------------------------------------

_LOADER = (
    "import os,sys;_f=int(sys.argv[2]);_b=os.pread(_f,os.fstat(_f).st_size,0);"
    "exec(compile(_b[:_b.index(0)],'<sandbox>','exec'))"
)

_BOOTSTRAP = r'''
import os, sys

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
    return json.loads(data[data.index(0) + 1:])


# ----------------------------------------------------------------------- stage 1
def stage1(cfg, cfg_fd, st_fd):
    layers, notes = [], []
    os.umask(0o022)
    wd = cfg["workdir"]
    sb_uid = cfg.get("uid")
    libc = None
    if cfg["kernel"]:
        try:
            import ctypes
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                   ctypes.c_ulong, ctypes.c_char_p)
            libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)
            libc.unshare.argtypes = (ctypes.c_int,)
            libc.sethostname.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
            libc.prctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                                   ctypes.c_ulong, ctypes.c_ulong)
        except Exception as e:  # no ctypes / no libc: audit layer only
            notes.append("ctypes unavailable: %s" % (e,))
            libc = None
    if libc is not None:
        namespaces(libc, cfg, layers, notes)
    os.chdir(wd)
    write_files(cfg["files"], wd, sb_uid if os.geteuid() == 0 else None)
    if sb_uid is not None and os.geteuid() == 0:
        drop_uid(cfg, sb_uid, layers, notes)
    set_rlimits(cfg, layers, notes, nproc_effective=(os.geteuid() != 0))
    if libc is not None:
        if libc.prctl(38, 1, 0, 0, 0) == 0:  # PR_SET_NO_NEW_PRIVS
            layers.append("no_new_privs")
        libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG = SIGKILL (after the uid change)
    if os.getppid() != cfg["parent_pid"]:
        os._exit(125)  # parent already gone
    emit(st_fd, {"layers": layers, "notes": notes})
    os.chdir(wd)
    exe = cfg["exe"]
    argv = [exe] + cfg["flags"] + ["-c", cfg["loader"], "2", str(cfg_fd), str(st_fd)]
    try:
        os.execve(exe, argv, cfg["env"])
    except OSError as e:
        emit(st_fd, {"launch_error": "exec of %s failed: %s" % (exe, e)})
        os._exit(126)


def namespaces(libc, cfg, layers, notes):
    import ctypes
    NEWNS, NEWUTS, NEWIPC, NEWUSER, NEWNET = 0x20000, 0x4000000, 0x8000000, 0x10000000, 0x40000000
    want = NEWNS | NEWNET | NEWIPC | NEWUTS
    got = 0
    if os.geteuid() == 0:
        if libc.unshare(want) == 0:
            got = want
        else:
            for flag in (NEWNET, NEWNS, NEWIPC, NEWUTS):
                if libc.unshare(flag) == 0:
                    got |= flag
            if not got:
                notes.append("unshare: %s" % os.strerror(ctypes.get_errno()))
    else:
        uid, gid = os.getuid(), os.getgid()
        if libc.unshare(NEWUSER | want) == 0:
            got = want
            try:
                for name, text in (("setgroups", "deny"), ("uid_map", "%d %d 1" % (uid, uid)),
                                   ("gid_map", "%d %d 1" % (gid, gid))):
                    fd = os.open("/proc/self/" + name, os.O_WRONLY)
                    try:
                        os.write(fd, text.encode())
                    finally:
                        os.close(fd)
                layers.append("userns")
            except OSError as e:
                notes.append("user namespace id maps: %s" % (e,))
        else:
            notes.append("unshare(CLONE_NEWUSER): %s" % os.strerror(ctypes.get_errno()))
    if got & NEWNET:
        layers.append("netns")
    if got & NEWIPC:
        layers.append("ipcns")
    if got & NEWUTS:
        libc.sethostname(b"sandbox", 7)
    if got & NEWNS:
        try:
            setup_mounts(libc, cfg, layers, notes)
        except OSError as e:
            notes.append("mount setup: %s" % (e,))


def unescape_mount(s):
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def setup_mounts(libc, cfg, layers, notes):
    import ctypes
    RDONLY, NOSUID, NODEV, NOEXEC, REMOUNT = 1, 2, 4, 8, 32
    NOATIME, NODIRATIME, BIND, REC, PRIVATE = 1024, 2048, 4096, 16384, 1 << 18
    RELATIME, STRICTATIME = 1 << 21, 1 << 24

    def enc(s):
        return None if s is None else s.encode("utf-8", "surrogateescape")

    def mount(src, target, fstype, flags, data=None):
        if libc.mount(enc(src), enc(target), enc(fstype), flags, enc(data)) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "mount %s: %s" % (target, os.strerror(err)))

    mount(None, "/", None, REC | PRIVATE)
    layers.append("mountns")
    wd = cfg["workdir"]
    sb_uid = cfg.get("uid") if os.geteuid() == 0 else None

    # 1. hide directories (homes, the parent's cwd) behind an empty tmpfs, re-exposing
    #    only what the child needs (the Python installation, the temp dir).
    for hidden, exposed in cfg["hide"]:
        fds = []
        try:
            for path in exposed:
                fds.append(os.open(path, os.O_PATH | os.O_CLOEXEC))
        except OSError as e:
            notes.append("hide %s skipped: %s" % (hidden, e))
            for fd in fds:
                os.close(fd)
            continue
        covered = False
        try:
            mount("tmpfs", hidden, "tmpfs", NOSUID | NODEV | NOEXEC, "mode=0755,size=1m")
            covered = True
            for path, fd in zip(exposed, fds):
                src = "/proc/self/fd/%d" % fd
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if os.path.isdir(src):
                    os.makedirs(path, exist_ok=True)
                else:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
                mount(src, path, None, BIND | REC)
            layers.append("hide:" + hidden)
        except OSError as e:
            notes.append("hide %s failed: %s" % (hidden, e))
            if covered:
                libc.umount2(enc(hidden), 2)  # MNT_DETACH: back to the original view
        finally:
            for fd in fds:
                os.close(fd)

    # 2. the temp dir: a private, size-capped tmpfs (or at least its own mount).
    opts = "size=%dm,mode=0700" % cfg["limits"]["disk_mb"]
    if sb_uid is not None:
        opts += ",uid=%d,gid=%d" % (sb_uid, sb_uid)
    try:
        mount("tmpfs", wd, "tmpfs", NOSUID | NODEV | NOEXEC, opts)
        layers.append("tmpfs-workdir")
    except OSError as e:
        notes.append("tmpfs temp dir: %s" % (e,))
        mount(wd, wd, None, BIND | REC)

    # 3. everything else read-only.
    with open("/proc/self/mountinfo", "rb") as f:
        lines = f.read().decode("utf-8", "surrogateescape").splitlines()
    failed = []
    for line in lines:
        fields = line.split(" ")
        if len(fields) < 6:
            continue
        target = unescape_mount(fields[4])
        if target == wd:
            continue
        options = fields[5].split(",")
        flags = REMOUNT | BIND | RDONLY
        for opt, bit in (("nosuid", NOSUID), ("nodev", NODEV), ("noexec", NOEXEC),
                         ("noatime", NOATIME), ("nodiratime", NODIRATIME), ("relatime", RELATIME)):
            if opt in options:
                flags |= bit
        if "noatime" not in options and "relatime" not in options:
            flags |= STRICTATIME
        try:
            mount(None, target, None, flags)
        except OSError:
            failed.append(target)
    if "/" in failed:
        notes.append("read-only remount of / failed")
    else:
        layers.append("readonly-fs")


def write_files(files, wd, owner):
    for rel, content in files.items():
        path = os.path.join(wd, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        try:
            data = content.encode("utf-8", "surrogateescape")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    if owner is not None:
        for root, dirs, names in os.walk(wd):
            for name in dirs + names:
                os.lchown(os.path.join(root, name), owner, owner)
        os.lchown(wd, owner, owner)


def drop_uid(cfg, uid, layers, notes):
    groups = os.getgroups()
    rgid = os.getresgid()
    try:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, 0)  # keep saved uid 0 so that we can step back
    except OSError as e:
        notes.append("uid drop failed: %s" % (e,))
        try:
            os.setresuid(0, 0, 0)
            os.setresgid(*rgid)
            os.setgroups(groups)
        except OSError:
            os._exit(125)
        return False
    usable = (os.access(cfg["exe"], os.X_OK) and os.access(cfg["stdlib_probe"], os.R_OK)
              and os.access(cfg["workdir"], os.W_OK | os.X_OK))
    if usable:
        os.setresuid(uid, uid, uid)
        layers.append("uid")
        return True
    os.setresuid(0, 0, 0)
    os.setresgid(*rgid)
    os.setgroups(groups)
    notes.append("unprivileged uid not used: the interpreter is not accessible to it")
    return False


def set_rlimits(cfg, layers, notes, nproc_effective):
    import resource as R
    lim = cfg["limits"]
    mb = 1024 * 1024

    def setlim(res, soft, hard=None):
        hard = soft if hard is None else hard
        try:
            cur_hard = R.getrlimit(res)[1]
            if cur_hard != R.RLIM_INFINITY:
                hard = min(hard, cur_hard)
                soft = min(soft, hard)
            R.setrlimit(res, (soft, hard))
            return True
        except (ValueError, OSError) as e:
            notes.append("setrlimit %s: %s" % (res, e))
            return False

    ok = setlim(R.RLIMIT_AS, lim["memory_mb"] * mb)
    ok &= setlim(R.RLIMIT_CPU, lim["cpu_s"], lim["cpu_s"] + 1)
    ok &= setlim(R.RLIMIT_FSIZE, lim["max_file_mb"] * mb)
    ok &= setlim(R.RLIMIT_CORE, 0)
    setlim(R.RLIMIT_NOFILE, 256)
    if ok:
        layers.append("rlimits")
    # uid 0 of the initial user namespace ignores RLIMIT_NPROC; set it anyway (it does
    # hold for "root" of a rootless container), but only claim it where it is enforced.
    if setlim(R.RLIMIT_NPROC, lim["max_procs"]) and nproc_effective:
        layers.append("nproc")


# ----------------------------------------------------------------------- stage 2
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
    DENY, OPEN, WRITE, LINK, SOCKET, KILL, KILLPG, IMPORT, SETATTR = range(9)
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
    table["code.__new__"] = (DENY, "blocked: constructing code objects is not allowed in the sandbox")
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
             _SETATTR=SETATTR, _check_open=check_open, _check_write=check_write,
             _check_link=check_link, _getpid=posix.getpid, _getpgid=posix.getpgid,
             _AF_UNIX=1, _type=type, _int=int, _str=str, _FunctionType=types.FunctionType,
             _partition=str.partition, _issubclass=issubclass,
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
                             and obj.__code__.co_filename == "<sandbox>"):
                raise _V("blocked: modifying the sandbox guard is not allowed")
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
        [f for f in te.stack if f.filename != "<sandbox>"])
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
    if cfg["audit"]:
        install_guard(cfg)
    del cfg
    try:
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
    g = globals()
    for name in ("_f", "_b"):  # the loader's temporaries
        g.pop(name, None)
    stage, cfg_fd, st_fd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    cfg = read_cfg(cfg_fd)
    if stage == "1":
        try:
            stage1(cfg, cfg_fd, st_fd)
        except BaseException as e:
            try:
                emit(st_fd, {"launch_error": "%s: %s" % (type(e).__name__, e)})
            finally:
                os._exit(126)
    else:
        stage2(cfg, cfg_fd, st_fd)


main()
'''

# --------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------

_SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/dev",
                "/proc", "/sys", "/run", "/var", "/opt", "/nix", "/snap", "/boot", "/srv")
_READ_EXTRA = ["/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/random",
               "/etc/localtime", "/usr/share/zoneinfo", "/etc/mime.types", "/etc/os-release",
               "/usr/lib/os-release", "/proc/cpuinfo", "/proc/meminfo"]
_UID_BASE = 0x40000000  # sandbox uids: [_UID_BASE, _UID_BASE + 2**24)
_UID_SPAN = 1 << 24
_STATUS_MAX_BYTES = 64 * 1024 * 1024

_uids_lock = threading.Lock()
_uids_in_use: set[int] = set()
_kernel_layers_ok = True  # set to False when the kernel layers prevent the child from starting
_uid_range_ok: bool | None = None
_semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


class _Plan:
    """Facts about the interpreter and the parent, computed once per process."""

    _cached: _Plan | None = None

    def __init__(self) -> None:
        exe = sys.executable
        if not exe:
            raise RuntimeError("sandbox: sys.executable is unknown; cannot start a child interpreter")
        self.exe = exe
        self.stdlib_probe = os.path.realpath(os.__file__)
        expose = {
            os.path.realpath(p)
            for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                      os.path.dirname(exe), os.path.dirname(os.path.realpath(exe)),
                      os.path.dirname(self.stdlib_probe))
            if p
        }
        # drop paths nested inside other exposed paths
        self.expose = sorted(p for p in expose if not any(q != p and _within(p, q) for q in expose))
        # homes (dotfiles with credentials), the project (``.env``), the temp root (other
        # processes' temp files)
        candidates = {"/root", "/home", os.path.expanduser("~"), tempfile.gettempdir()}
        try:
            candidates.add(os.getcwd())
        except OSError:
            pass
        # ancestors of the interpreter that other users cannot traverse must be covered too
        for p in self.expose:
            parts = p.strip("/").split("/")
            for i in range(1, len(parts)):
                anc = "/" + "/".join(parts[:i])
                try:
                    if not os.stat(anc).st_mode & stat.S_IXOTH:
                        candidates.add(anc)
                        break
                except OSError:
                    break
        hide = []
        for c in sorted(candidates):
            try:
                c = os.path.realpath(c)
            except OSError:
                continue
            if c == "/" or not os.path.isdir(c):
                continue
            if any(_within(s, c) or _within(c, s) for s in _SYSTEM_DIRS):
                continue
            if any(_within(c, p) for p in self.expose):  # inside the interpreter: keep
                continue
            hide.append(c)
        # keep only outermost hidden directories
        self.hide = [c for c in hide if not any(d != c and _within(c, d) for d in hide)]

    @classmethod
    def get(cls) -> _Plan:
        if cls._cached is None:
            cls._cached = cls()
        return cls._cached


@dataclass
class _Job:
    code: str
    limits: SandboxLimits
    mode: str = "run"  # "run" | "call"
    stdin: str = ""
    files: dict[str, str] = field(default_factory=dict)
    function: str | None = None
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    audit: bool = True  # tests switch this off to prove the kernel layers hold on their own
    kernel: bool = True


@dataclass
class _Outcome:
    result: SandboxResult
    status: dict[str, Any]


def _child_env(workdir: str) -> dict[str, str]:
    return {
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONUTF8": "1",
        "PYTHONIOENCODING": "utf-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HOME": workdir,
        "TMPDIR": workdir,
    }


def _validate_files(files: dict[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, content in (files or {}).items():
        parts = name.replace("\\", "/").split("/")
        if not name or name.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"sandbox: invalid file name {name!r} (must be a plain relative path)")
        if not isinstance(content, str):
            raise TypeError(f"sandbox: content of {name!r} must be str")
        out["/".join(parts)] = content
    return out


def _uid_range_usable() -> bool:
    """Per-run uids need root and the whole uid range mapped in our user namespace
    (inside a rootless container only a few uids exist)."""
    global _uid_range_ok
    if _uid_range_ok is None:
        ok = False
        if os.geteuid() == 0:
            try:
                with open("/proc/self/uid_map") as f:
                    for line in f:
                        inner, _outer, count = (int(x) for x in line.split())
                        if inner <= _UID_BASE and _UID_BASE + _UID_SPAN <= inner + count:
                            ok = True
            except (OSError, ValueError):
                ok = False
        _uid_range_ok = ok
    return _uid_range_ok


def _alloc_uid() -> int:
    with _uids_lock:
        while True:
            uid = _UID_BASE + secrets.randbelow(_UID_SPAN)
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def _free_uid(uid: int | None) -> None:
    if uid is not None:
        with _uids_lock:
            _uids_in_use.discard(uid)


def _kill_uid(uid: int) -> None:
    """SIGKILL every process whose real or effective uid is ``uid`` (a per-run uid)."""
    for _ in range(10):
        found = False
        try:
            pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
        except OSError:
            return
        for pid in pids:
            try:
                with open(f"/proc/{pid}/status", "rb") as f:
                    data = f.read()
                if b"\nState:\tZ" in data:  # already dead, waiting to be reaped
                    continue
                i = data.index(b"\nUid:")
                ids = data[i + 5:data.index(b"\n", i + 1)].split()
                if uid in (int(ids[0]), int(ids[1])):
                    os.kill(pid, signal.SIGKILL)
                    found = True
            except (OSError, ValueError, IndexError):
                continue
        if not found:
            return
        time.sleep(0.01)


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def _read_capped(stream: asyncio.StreamReader | None, cap: int) -> tuple[bytes, int]:
    buf = bytearray()
    total = 0
    if stream is None:
        return b"", 0
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            break
        total += len(chunk)
        if len(buf) < cap:
            buf += chunk[: cap - len(buf)]
    return bytes(buf), total


async def _feed_stdin(writer: asyncio.StreamWriter | None, data: str) -> None:
    if writer is None:
        return
    try:
        if data:
            writer.write(data.encode("utf-8"))
            await writer.drain()
    except (BrokenPipeError, ConnectionResetError, OSError):
        pass
    finally:
        try:
            writer.close()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass


def _decode_output(data: bytes, total: int, limit: int) -> str:
    text = data.decode("utf-8", "replace")
    if len(text) > limit or total > len(data):
        text = text[:limit]
        text += f"\n... [output truncated to {limit} characters; {total} bytes in total]"
    return text


def _read_status(f) -> dict[str, Any]:
    status: dict[str, Any] = {}
    try:
        size = os.fstat(f.fileno()).st_size
        data = os.pread(f.fileno(), min(size, _STATUS_MAX_BYTES), 0)
    except OSError:
        return status
    for line in data.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            if "layers" in rec:
                status.setdefault("layers", rec.get("layers") or [])
                status.setdefault("notes", rec.get("notes") or [])
            else:
                for k, v in rec.items():
                    status.setdefault(k, v)
    if size > _STATUS_MAX_BYTES:
        status.setdefault("status_too_large", True)
    return status


_SIGNAL_NAMES = {int(s): s.name for s in signal.Signals}


def _build_result(
    *,
    job: _Job,
    returncode: int | None,
    stdout: str,
    stderr: str,
    timed_out: bool,
    duration: float,
    status: dict[str, Any],
) -> SandboxResult:
    """The single place that turns a finished child into a SandboxResult."""
    limits = job.limits
    error: str | None = None
    if timed_out:
        error = f"timed out after {limits.timeout_s}s"
    elif "launch_error" in status:
        error = f"sandbox failed to start: {status['launch_error']}"
    elif "started" not in status and returncode not in (0, None):
        tail = stderr.strip().splitlines()[-1:] or [f"exit status {returncode}"]
        error = f"sandbox failed to start: {tail[0][:300]}"
    elif status.get("blocked"):
        error = str(status["blocked"])
    elif status.get("memory"):
        error = f"memory limit exceeded ({limits.memory_mb} MB)"
    elif status.get("error"):
        error = str(status["error"])
    elif returncode is not None and returncode < 0:
        sig = -returncode
        name = _SIGNAL_NAMES.get(sig, f"signal {sig}")
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and duration >= limits.cpu_s):
            error = f"CPU time limit exceeded ({limits.cpu_s}s)"
        elif sig == signal.SIGXFSZ:
            error = f"file size limit exceeded ({limits.max_file_mb} MB)"
        elif sig in (signal.SIGSEGV, signal.SIGBUS, signal.SIGABRT):
            error = f"crashed with {name} (possibly the memory limit of {limits.memory_mb} MB)"
        else:
            error = f"killed by {name}"
    elif returncode not in (0, None):
        last = stderr.strip().splitlines()[-1:] if stderr.strip() else []
        if last and "MemoryError" in last[0]:
            error = f"memory limit exceeded ({limits.memory_mb} MB)"
        elif last:
            error = f"exited with status {returncode}: {last[0][:300]}"
        else:
            error = f"exited with status {returncode}"
    ok = returncode == 0 and not timed_out and error is None
    if ok and job.mode == "call" and "return" not in status:
        ok = False
        error = f"{job.function}() did not return (the process exited with status 0 first)"
    layers = list(status.get("layers") or [])
    if status.get("started") and job.audit:
        layers.append("audit-hook")
    return SandboxResult(
        ok=ok,
        returncode=returncode,
        stdout=stdout,
        stderr=stderr,
        timed_out=timed_out,
        error=error,
        duration_s=round(duration, 4),
        layers=layers,
    )


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """Stream protocol that also reports the moment the main process exits.

    ``Process.wait()`` only completes once the pipes are closed as well, which leftover
    children of the run could delay; the exit itself is what starts the cleanup."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def _spawn(argv: list[str], **kwargs) -> tuple[asyncio.subprocess.Process, _ExitProtocol]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ExitProtocol(limit=2**16, loop=loop), *argv, **kwargs
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol


def _loop_semaphore() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    sem = _semaphores.get(loop)
    if sem is None:
        sem = _semaphores[loop] = asyncio.Semaphore(MAX_CONCURRENT_SANDBOXES)
    return sem


async def _execute(job: _Job) -> _Outcome:
    global _kernel_layers_ok
    async with _loop_semaphore():
        kernel = job.kernel and _kernel_layers_ok
        outcome = await _execute_once(job, kernel=kernel)
        st = outcome.status
        if (
            kernel
            and "started" not in st
            and not outcome.result.timed_out
            and outcome.result.returncode not in (0, None)
        ):
            retry = await _execute_once(job, kernel=False)
            if "started" in retry.status:
                _kernel_layers_ok = False
                logger.warning(
                    "sandbox: the child did not start with kernel isolation layers (%s); "
                    "continuing with rlimits + audit hook only",
                    outcome.result.error,
                )
                return retry
        return outcome


async def _execute_once(job: _Job, *, kernel: bool) -> _Outcome:
    plan = _Plan.get()
    limits = job.limits
    uid = _alloc_uid() if kernel and _uid_range_usable() else None
    workdir = os.path.realpath(tempfile.mkdtemp(prefix="tg_sandbox_"))
    cfg_file = tempfile.TemporaryFile()
    st_file = tempfile.TemporaryFile()
    proc: asyncio.subprocess.Process | None = None
    tasks: dict[str, asyncio.Future] = {}
    try:
        if uid is not None:
            try:
                os.chown(workdir, uid, uid)
            except OSError:
                _free_uid(uid)
                uid = None
        hide = [
            [d, sorted(p for p in (*plan.expose, workdir) if _within(p, d))]
            for d in plan.hide
            if workdir != d
        ]
        cfg = {
            "workdir": workdir,
            "uid": uid,
            "kernel": kernel,
            "audit": job.audit,
            "hide": hide,
            "exe": plan.exe,
            "stdlib_probe": plan.stdlib_probe,
            "flags": ["-s", "-P", "-B"],
            "loader": _LOADER,
            "env": _child_env(workdir),
            "parent_pid": os.getpid(),
            "limits": limits.model_dump(),
            "files": job.files,
            "read_extra": _READ_EXTRA,
            "mode": job.mode,
            "code": job.code,
            "function": job.function,
            "args": job.args,
            "kwargs": job.kwargs,
        }
        cfg_file.write(_BOOTSTRAP.encode("utf-8") + b"\0" + json.dumps(cfg).encode("ascii"))
        cfg_file.flush()
        cfg_fd, st_fd = cfg_file.fileno(), st_file.fileno()
        argv = [plan.exe, "-I", "-S", "-B", "-c", _LOADER, "1", str(cfg_fd), str(st_fd)]
        cap = limits.max_output_chars * 4 + 4
        start = time.monotonic()
        try:
            proc, protocol = await _spawn(
                argv,
                stdin=asyncio.subprocess.PIPE if job.stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=workdir,
                env=_child_env(workdir),
                pass_fds=(cfg_fd, st_fd),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as e:
            result = SandboxResult(
                ok=False, returncode=None, stdout="", stderr="", timed_out=False,
                error=f"sandbox failed to start: {e}", duration_s=0.0,
            )
            return _Outcome(result, {})
        tasks["out"] = asyncio.ensure_future(_read_capped(proc.stdout, cap))
        tasks["err"] = asyncio.ensure_future(_read_capped(proc.stderr, cap))
        tasks["wait"] = asyncio.ensure_future(proc.wait())
        tasks["stdin"] = asyncio.ensure_future(_feed_stdin(proc.stdin, job.stdin))
        await asyncio.wait({protocol.exited, tasks["wait"]}, timeout=limits.timeout_s,
                           return_when=asyncio.FIRST_COMPLETED)
        timed_out = not (protocol.exited.done() or tasks["wait"].done())
        duration = time.monotonic() - start
        # The main process is gone (or timed out): nothing of this run may outlive it.
        # A process group id stays allocated while any member exists, so killpg() after
        # the leader was reaped can only reach this run's leftovers.
        _killpg(proc.pid)
        if uid is not None:
            _kill_uid(uid)  # also those that left the process group (setsid)
        _, still = await asyncio.wait({tasks["out"], tasks["err"], tasks["wait"]}, timeout=2.0)
        for t in still:
            t.cancel()
        tasks["stdin"].cancel()
        out, out_total = _task_value(tasks["out"], (b"", 0))
        err, err_total = _task_value(tasks["err"], (b"", 0))
        returncode = proc.returncode
        status = _read_status(st_file)
        result = _build_result(
            job=job,
            returncode=returncode,
            stdout=_decode_output(out, out_total, limits.max_output_chars),
            stderr=_decode_output(err, err_total, limits.max_output_chars),
            timed_out=timed_out,
            duration=duration,
            status=status,
        )
        return _Outcome(result, status)
    finally:  # also reached when the caller cancels us
        for t in tasks.values():
            if not t.done():
                t.cancel()
        if proc is not None and proc.returncode is None:
            _killpg(proc.pid)
            try:
                await asyncio.wait_for(proc.wait(), 2.0)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        if uid is not None:
            _kill_uid(uid)
        _free_uid(uid)
        cfg_file.close()
        st_file.close()
        _rmtree(workdir)


def _task_value(task: asyncio.Future, default):
    if task.done() and not task.cancelled() and task.exception() is None:
        return task.result()
    return default


def _rmtree(path: str) -> None:
    """Remove the temp dir even if the child left unreadable/unwritable entries."""

    def retry(func, p, _exc) -> None:
        try:
            os.chmod(os.path.dirname(p), 0o700)
            if not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)


def _run_sync(coro):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    # Called from inside a running event loop: run on a private loop in a helper thread.
    result: list = []

    def target() -> None:
        result.append(asyncio.run(coro))

    t = threading.Thread(target=target, name="sandbox-sync", daemon=True)
    t.start()
    t.join()
    if not result:
        raise RuntimeError("sandbox: the run was aborted")
    return result[0]


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


async def arun_code(
    code: str,
    *,
    stdin: str = "",
    limits: SandboxLimits | None = None,
    files: dict[str, str] | None = None,
) -> SandboxResult:
    """Run ``code`` as ``__main__`` in a fresh sandboxed interpreter.

    ``files`` maps relative paths to text content, created in the temp dir (the child's
    cwd) before the code starts.  Never raises for anything the code does.
    """
    if not isinstance(code, str):
        raise TypeError("sandbox: code must be str")
    job = _Job(code=code, limits=limits or SandboxLimits(), stdin=stdin or "",
               files=_validate_files(files))
    return (await _execute(job)).result


def run_code(
    code: str,
    *,
    stdin: str = "",
    limits: SandboxLimits | None = None,
    files: dict[str, str] | None = None,
) -> SandboxResult:
    """Synchronous :func:`arun_code`."""
    return _run_sync(arun_code(code, stdin=stdin, limits=limits, files=files))


async def acall_function(
    source: str,
    function_name: str,
    args: list,
    kwargs: dict | None = None,
    *,
    limits: SandboxLimits | None = None,
) -> tuple[Any, SandboxResult]:
    """Define ``source`` in a sandbox, call ``function_name(*args, **kwargs)`` there.

    Arguments and the return value travel as JSON (so tuples come back as lists).
    Returns ``(value, result)``; ``value`` is None unless ``result.ok``.
    """
    if not isinstance(source, str):
        raise TypeError("sandbox: source must be str")
    if not isinstance(function_name, str) or not function_name.isidentifier():
        raise ValueError(f"sandbox: invalid function name {function_name!r}")
    try:
        payload = json.loads(json.dumps({"args": list(args), "kwargs": dict(kwargs or {})}))
    except (TypeError, ValueError) as e:
        raise TypeError(f"sandbox: arguments must be JSON-serializable: {e}") from None
    job = _Job(code=source, limits=limits or SandboxLimits(), mode="call",
               function=function_name, args=payload["args"], kwargs=payload["kwargs"])
    outcome = await _execute(job)
    value = outcome.status.get("return") if outcome.result.ok else None
    return value, outcome.result


def call_function(
    source: str,
    function_name: str,
    args: list,
    kwargs: dict | None = None,
    *,
    limits: SandboxLimits | None = None,
) -> tuple[Any, SandboxResult]:
    """Synchronous :func:`acall_function`."""
    return _run_sync(acall_function(source, function_name, args, kwargs, limits=limits))


async def _arun_without_audit(code: str, limits: SandboxLimits | None = None) -> SandboxResult:
    """Test helper: run with the audit hook disabled, so only the kernel layers protect."""
    job = _Job(code=code, limits=limits or SandboxLimits(), audit=False)
    return (await _execute(job)).result
