"""Stage 1 of a sandbox run (the launcher): build the kernel isolation layers, then exec
the runner.

Run by path in a fresh ``python -I -S -B`` started by the parent with an empty
environment, as ``launcher.py <cfg_fd> <status_fd>``: both descriptors are anonymous
temporary files inherited from the parent (the JSON configuration, and the status
records this stage and the runner append to).  Best effort, each layer that holds is
reported in the ``layers`` status record: network / IPC / UTS / mount namespaces (as
root, or through an unprivileged user namespace), the mount view (hidden directories,
size-capped tmpfs temp dir, everything else read-only), a per-run uid, rlimits,
``no_new_privs`` and the parent-death signal.  Then it ``execve``s the runner
(``runner.py``, stage 2) with the environment built by the parent.

Standard library only, Python 3.11+; this file is never imported by the parent.
"""

import os
import sys

def emit(fd, obj):
    import json
    data = (json.dumps(obj, separators=(",", ":")) + "\n").encode("ascii")
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


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
    if cfg.get("zygote"):
        pass  # the per-run uid and rlimits are applied in each child the zygote forks
    else:
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
    argv = [exe] + cfg["flags"] + [cfg["runner"], str(cfg_fd), str(st_fd)]
    if cfg.get("zygote"):
        argv.append(str(cfg["control_fd"]))
        become_zygote(libc, exe, argv, cfg["env"], st_fd)
    try:
        os.execve(exe, argv, cfg["env"])
    except OSError as e:
        emit(st_fd, {"launch_error": "exec of %s failed: %s" % (exe, e)})
        os._exit(126)


def become_zygote(libc, exe, argv, env, st_fd):
    """Fork the zygote (pid 1 of the new pid namespace when there is one, so every sandbox
    child dies with it) and wait for it; this process keeps ctypes, the zygote never has it."""
    pid = os.fork()
    if pid == 0:
        try:
            if libc is not None:
                libc.prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG = SIGKILL: dies with this stage
            os.execve(exe, argv, env)
        except BaseException as e:
            emit(st_fd, {"launch_error": "exec of the zygote failed: %s" % (e,)})
        os._exit(126)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def namespaces(libc, cfg, layers, notes):
    import ctypes
    NEWNS, NEWUTS, NEWIPC, NEWUSER, NEWNET = 0x20000, 0x4000000, 0x8000000, 0x10000000, 0x40000000
    want = NEWNS | NEWNET | NEWIPC | NEWUTS
    if cfg.get("zygote"):
        want |= 0x20000000  # CLONE_NEWPID: the zygote's children die with it
    got = 0
    if os.geteuid() == 0:
        if libc.unshare(want) == 0:
            got = want
        else:
            for flag in (NEWNET, NEWNS, NEWIPC, NEWUTS, want & 0x20000000):
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
    if got & 0x20000000:
        layers.append("pidns")
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

    # 1. hide directories (every top-level one but the system's, /etc, homes, the parent's
    #    cwd) behind an empty tmpfs, re-exposing only what the child needs (the Python
    #    installation, the temp dir, the runner script, a few harmless /etc files).
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

    # 1b. top-level files outside the system directories: /dev/null over each.
    for path in cfg.get("cover") or ():
        try:
            mount("/dev/null", path, None, BIND)
        except OSError as e:
            notes.append("cover %s failed: %s" % (path, e))

    # 2. the temp dir: a private, size-capped tmpfs (or at least its own mount).
    # the zygote's runs root: traversable, so each run's uid reaches its own 0700 directory
    opts = "size=%dm,mode=%s" % (cfg["limits"]["disk_mb"], "0711" if cfg.get("zygote") else "0700")
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
              and os.access(cfg["runner"], os.R_OK)
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


def main():
    """Entry point: ``launcher.py <cfg_fd> <status_fd>``; never returns."""
    cfg_fd, st_fd = int(sys.argv[1]), int(sys.argv[2])
    try:
        stage1(read_cfg(cfg_fd), cfg_fd, st_fd)
    except BaseException as e:
        try:
            emit(st_fd, {"launch_error": "%s: %s" % (type(e).__name__, e)})
        finally:
            os._exit(126)


if __name__ == "__main__":
    main()
