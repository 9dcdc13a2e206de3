"""The isolation a sandbox child gets: its view of the filesystem, its uid, its
environment, and the configuration record that tells the child scripts all of it.

Computed in the parent; applied by ``launcher.py`` (kernel layers) and ``runner.py``
(audit hook) inside the child.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
import tempfile
import threading

from textgrad_core.sandbox.limits import Job

#: The two child scripts, run by path (never imported by the parent).
LAUNCHER = os.path.realpath(os.path.join(os.path.dirname(__file__), "launcher.py"))
RUNNER = os.path.realpath(os.path.join(os.path.dirname(__file__), "runner.py"))
#: The judge <-> program protocol of checked runs, sent as source in the config.
WIRE = os.path.realpath(os.path.join(os.path.dirname(__file__), "wire.py"))
#: The warm pool's fork server (loads the two scripts above by path from its own directory).
ZYGOTE = os.path.realpath(os.path.join(os.path.dirname(__file__), "zygote.py"))

# Top-level directories the child keeps (read-only): the system's programs and libraries,
# /etc (itself reduced to KEEP_ETC), devices and the kernel's views.  Every other top-level
# directory (/work, /home, /root, /tmp, /var, /run, /opt, /srv, /mnt, ...) is covered by an
# empty tmpfs, and top-level files by /dev/null, so that reads outside the allowed paths
# fail even without the audit hook; the Python installation, the run's temp dir and the
# runner script are bind-mounted back in.
KEEP_TOP = frozenset(("usr", "lib", "lib32", "lib64", "libx32", "bin", "sbin", "etc", "dev",
                      "proc", "sys", "nix", "snap"))
KEEP_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "passwd",
            "group", "nsswitch.conf", "host.conf", "hosts", "mime.types", "os-release",
            "services", "protocols", "alternatives")
# Other processes' shared memory.
HIDE_EXTRA = ("/dev/shm",)
# Files the audit hook lets the child read besides the temp dir and the Python installation.
READ_EXTRA = ["/dev/null", "/dev/zero", "/dev/full", "/dev/urandom", "/dev/random",
              "/etc/localtime", "/usr/share/zoneinfo", "/etc/mime.types", "/etc/os-release",
              "/usr/lib/os-release", "/proc/cpuinfo", "/proc/meminfo"]
SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/dev",
               "/proc", "/sys", "/run", "/var", "/opt", "/nix", "/snap", "/boot", "/srv")

UID_BASE = 0x40000000  # sandbox uids: [UID_BASE, UID_BASE + 2**24)
UID_SPAN = 1 << 24

_uids_lock = threading.Lock()
_uids_in_use: set[int] = set()
_uid_range_ok: bool | None = None


def within(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` or below it (both absolute, normalised)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


class Plan:
    """Facts about the interpreter and the machine, computed once per process: what the
    child must see (``expose``), what it must not (``hide``, ``cover``)."""

    _cached: Plan | None = None

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
        self.expose = sorted(p for p in expose if not any(q != p and within(p, q) for q in expose))
        hide = self._hidden_dirs()
        # keep only outermost hidden directories
        self.hide = [c for c in hide if not any(d != c and within(c, d) for d in hide)]
        self.cover = self._covered_files()

    def _hidden_dirs(self) -> list[str]:
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
            c = os.path.realpath(c)
            if c == "/" or not os.path.isdir(c):
                continue
            if any(within(s, c) or within(c, s) for s in SYSTEM_DIRS):
                continue
            if any(within(c, p) for p in self.expose):  # inside the interpreter: keep
                continue
            hide.append(c)
        for path in self._top_level(want_dirs=True) + ["/etc", *HIDE_EXTRA]:
            if os.path.isdir(path) and not os.path.islink(path) and path not in hide:
                if not any(within(path, p) for p in self.expose):
                    hide.append(path)
        return sorted(hide)

    def _covered_files(self) -> list[str]:
        return self._top_level(want_dirs=False)

    @staticmethod
    def _top_level(*, want_dirs: bool) -> list[str]:
        try:
            names = sorted(os.listdir("/"))
        except OSError:
            return []
        out = []
        for name in names:
            path = "/" + name
            if name in KEEP_TOP or os.path.islink(path):  # /bin -> usr/bin and the like
                continue
            if (os.path.isdir(path) if want_dirs else os.path.isfile(path)):
                out.append(path)
        return out

    def exposed_in(self, hidden: str, extra: tuple[str, ...]) -> list[str]:
        """Paths to bind back inside the hidden directory ``hidden``."""
        if hidden == "/etc":
            keep = [os.path.join("/etc", n) for n in KEEP_ETC]
            return [p for p in keep if os.path.lexists(p) and os.path.exists(p)]
        return sorted(p for p in (*self.expose, *extra) if within(p, hidden))

    @classmethod
    def get(cls) -> Plan:
        """The plan of this process (computed on first use)."""
        if cls._cached is None:
            cls._cached = cls()
        return cls._cached


def child_env(workdir: str) -> dict[str, str]:
    """The whole environment of the child: nothing is inherited from the parent."""
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


def child_config(job: Job, *, workdir: str, uid: int | None, kernel: bool, mounts: bool = True) -> dict:
    """The JSON record the launcher and the runner read from their config descriptor.

    ``mounts=False`` for a child of the warm pool's zygote: its mount view is the zygote's,
    built once, so the per-run record leaves out what only the launcher reads to build one."""
    plan = Plan.get()
    hide = [[d, plan.exposed_in(d, (workdir, RUNNER))] for d in plan.hide if workdir != d] if mounts else []
    return {
        "workdir": workdir,
        "uid": uid,
        "kernel": kernel,
        "audit": job.audit,
        "hide": hide,
        "cover": plan.cover if mounts else [],
        "exe": plan.exe,
        "stdlib_probe": plan.stdlib_probe,
        "runner": RUNNER,
        "flags": ["-s", "-P", "-B"],
        "env": child_env(workdir),
        "parent_pid": os.getpid(),
        "limits": job.limits.model_dump(),
        "files": job.files,
        "read_extra": READ_EXTRA,
        "mode": job.mode,
        "code": job.code,
        "function": job.function,
        "args": job.args,
        "kwargs": job.kwargs,
        **(peer_config(job.peer) if job.peer is not None else {}),
    }


def peer_config(fd: int) -> dict:
    """The config keys of a checked run: the socket's descriptor and the wire's source."""
    with open(WIRE, encoding="utf-8") as f:
        return {"peer_fd": fd, "wire_source": f.read(), "wire_file": WIRE}


def uid_range_usable() -> bool:
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
                        if inner <= UID_BASE and UID_BASE + UID_SPAN <= inner + count:
                            ok = True
            except (OSError, ValueError):
                ok = False
        _uid_range_ok = ok
    return _uid_range_ok


def alloc_uid() -> int:
    """A fresh uid from the sandbox range, unused by any other run of this process."""
    with _uids_lock:
        while True:
            uid = UID_BASE + secrets.randbelow(UID_SPAN)
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid


def free_uid(uid: int | None) -> None:
    """Give a run's uid back (None: the run had none)."""
    if uid is not None:
        with _uids_lock:
            _uids_in_use.discard(uid)


def zygote_config(*, runs_root: str, kernel: bool, disk_mb: int, control_fd: int) -> dict:
    """The launcher's record for starting the warm pool's zygote: the same layers as a cold
    run, a pid namespace, and ``runs_root`` (a tmpfs holding each run's directory) writable."""
    from textgrad_core.sandbox.limits import SandboxLimits

    plan = Plan.get()
    scripts = os.path.dirname(ZYGOTE)
    hide = [[d, plan.exposed_in(d, (runs_root, scripts))] for d in plan.hide if runs_root != d]
    return {
        "zygote": True,
        "control_fd": control_fd,
        "workdir": runs_root,
        "uid": None,
        "kernel": kernel,
        "hide": hide,
        "cover": plan.cover,
        "exe": plan.exe,
        "stdlib_probe": plan.stdlib_probe,
        "runner": ZYGOTE,
        "flags": ["-s", "-P", "-B"],
        "env": child_env(runs_root),
        "parent_pid": os.getpid(),
        "limits": SandboxLimits(disk_mb=disk_mb).model_dump(),
        "files": {},
    }
