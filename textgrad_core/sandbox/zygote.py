"""The zygote of the warm sandbox pool: a hardened interpreter that forks one fresh child per run.

Started once per parent process by the launcher (``launcher.py`` in zygote mode: network, IPC,
UTS, mount and pid namespaces, the read-only view with everything but the Python installation
hidden, ``no_new_privs``, the parent-death signal), as
``python -s -P -B zygote.py <cfg_fd> <status_fd> <control_fd>``.  It never runs user code and
never loads ctypes.  It pre-imports the runner, the standard modules user programs use most,
then waits on its control socket (a SOCK_SEQPACKET pair with the parent) for runs: each
request carries the run's config, status, stdin, stdout and stderr descriptors.  For every
run it forks; the child applies what is per run - its own session, its directory (mode 0700
in the zygote's tmpfs), the run's unique uid, the rlimits, a from-scratch environment - then
the runner's stage 2 (audit hook, user code) exactly as a cold start would.  Because the
zygote itself never runs user code, each child starts from the same clean state: nothing of
a previous run can be seen.  The zygote is pid 1 of its pid namespace, so when it dies (it
dies with the launcher, which dies with the parent) every child dies with it.

Messages (JSON): parent -> zygote ``{"run": id, "workdir": path}`` + 5 descriptors,
``{"kill": id}``, ``{"done": id}``; zygote -> parent ``{"ready": true}``,
``{"id": id, "pid": pid}``, ``{"id": id, "exit": returncode}``.

Standard library only, Python 3.11+; the parent never imports this file.
"""

import os
import sys

# Imported before any fork, from their caches, so that a run's own imports cost nothing
# (after the guard is installed, imports compile from source).
WARM_MODULES = ("json", "traceback", "linecache", "typing", "pathlib", "math", "re", "collections",
                "itertools", "functools", "heapq", "bisect", "string", "random", "hashlib", "copy",
                "fractions", "decimal", "statistics", "datetime", "tempfile", "io", "operator",
                "dataclasses", "enum", "array", "struct", "textwrap", "unicodedata", "atexit",
                "threading", "selectors", "socket", "signal",
                "resource")  # every child sets its rlimits: no extension module loaded per run


def load(path, name):
    """Load one of the sibling child scripts by path (no import path leads to them)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def exit_code(exc):
    """The exit status the interpreter would give for SystemExit ``exc``."""
    try:
        code = exc.code
        if code is None:
            return 0
        if type(code) is int:
            return code & 0xFF
        sys.stderr.write("%s\n" % (code,))
    except BaseException:
        pass
    return 1


def finish(code):
    """Leave like an interpreter at its end: join threads, run atexit, flush, exit."""
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        import atexit
        atexit._run_exitfuncs()
    except BaseException:
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    os._exit(code)


def child(z, fds):
    """Become one run: per-run isolation, then the runner's stage 2.  Never returns."""
    import signal
    runner, launcher = z["runner"], z["launcher"]
    cfg_fd, st_fd = fds[0], fds[1]
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in z["private_fds"]:
            os.close(fd)
        z.clear()  # the zygote's bookkeeping (other runs) is not this run's business
        sys.modules["__main__"] = runner  # as in a cold run, where the runner is __main__
        os.setsid()
        for target, fd in zip((0, 1, 2), fds[2:5]):
            os.dup2(fd, target)
        for fd in fds[2:5]:
            if fd > 2:
                os.close(fd)
        cfg = runner.read_cfg(cfg_fd)
        if len(fds) > 5:  # the number the peer socket got in this process
            cfg["peer_fd"] = fds[5]
        layers, notes = list(cfg.pop("zygote_layers")), []
        wd = cfg["workdir"]
        os.mkdir(wd, 0o700)
        uid = cfg.get("uid")
        owner = uid if uid is not None and os.geteuid() == 0 else None
        launcher.write_files(cfg["files"], wd, owner)
        if owner is not None:
            launcher.drop_uid(cfg, owner, layers, notes)
        launcher.set_rlimits(cfg, layers, notes, nproc_effective=(os.geteuid() != 0))
        os.chdir(wd)
        os.environ.clear()
        os.environ.update(cfg["env"])
        runner.emit(st_fd, {"layers": layers, "notes": notes})
    except BaseException as e:
        try:
            runner.emit(st_fd, {"launch_error": "%s: %s" % (type(e).__name__, e)})
        finally:
            os._exit(126)
    try:
        runner.stage2(cfg, cfg_fd, st_fd)
        code = 0
    except SystemExit as e:
        code = exit_code(e)
    finish(code)


def serve(z, ctl, cfg):
    """The zygote's loop: fork a child per run, report pids and exits, clean up after runs."""
    import json, selectors, shutil, signal, socket
    root = cfg["workdir"].rstrip("/") + "/"
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    jobs, workdirs = {}, {}  # pid -> run id; run id -> [pid, workdir]

    def send(obj):
        try:
            ctl.send(json.dumps(obj).encode("ascii"))
        except OSError:
            pass

    def reap():
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            run = jobs.pop(pid, None)
            if run is not None:
                send({"id": run, "exit": os.waitstatus_to_exitcode(status)})

    def shutdown():
        for run, (pid, _) in list(workdirs.items()):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        os._exit(0)

    sel = selectors.DefaultSelector()
    sel.register(ctl, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    # The epoll instance too: a child holding it could watch the zygote's traffic.
    z["private_fds"] = (wake_r, wake_w, ctl.fileno()) + ((sel.fileno(),) if hasattr(sel, "fileno") else ())
    send({"ready": True})
    while True:
        for key, _ in sel.select():
            if key.fileobj == wake_r:
                try:
                    while os.read(wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                reap()
                continue
            try:
                msg, fds, _, _ = socket.recv_fds(ctl, 65536, 8)
            except InterruptedError:
                continue
            except OSError:
                shutdown()
            if not msg:
                shutdown()
            req = json.loads(msg)
            if "run" in req:
                wd = req["workdir"]
                name = wd[len(root):]
                if len(fds) not in (5, 6) or not wd.startswith(root) or not name or "/" in name or ".." in name:
                    for fd in fds:
                        os.close(fd)
                    send({"id": req["run"], "exit": 126})
                    continue
                pid = os.fork()
                if pid == 0:
                    # This frame stays on the child's stack, where a run could read it: the
                    # other runs' pids and directories are not its business.
                    jobs.clear()
                    workdirs.clear()
                    child(z, fds)
                for fd in fds:
                    os.close(fd)
                jobs[pid] = req["run"]
                workdirs[req["run"]] = [pid, wd]
                send({"id": req["run"], "pid": pid})
                reap()
            elif "kill" in req and req["kill"] in workdirs:
                try:
                    os.killpg(workdirs[req["kill"]][0], signal.SIGKILL)
                except OSError:
                    pass
            elif "done" in req and req["done"] in workdirs:
                pid, wd = workdirs.pop(req["done"])
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
                shutil.rmtree(wd, ignore_errors=True)


def main():
    """Entry point: ``zygote.py <cfg_fd> <status_fd> <control_fd>``; never returns."""
    import socket
    cfg_fd, st_fd, ctl_fd = (int(a) for a in sys.argv[1:4])
    here = os.path.dirname(os.path.abspath(sys.argv[0]))
    z = {"runner": load(os.path.join(here, "runner.py"), "sandbox_runner"),
         "launcher": load(os.path.join(here, "launcher.py"), "sandbox_launcher")}
    try:
        cfg = z["runner"].read_cfg(cfg_fd)
        os.close(cfg_fd)
        for name in WARM_MODULES:
            try:
                __import__(name)
            except ImportError:
                pass
        ctl = socket.socket(fileno=ctl_fd)
        os.close(st_fd)
        # Everything allocated so far lives as long as the zygote: out of the collector's
        # sight, a child's collections do not touch (and so copy) the pages it shares.
        import gc
        gc.collect()
        gc.freeze()
    except BaseException as e:
        z["runner"].emit(st_fd, {"launch_error": "zygote: %s: %s" % (type(e).__name__, e)})
        os._exit(126)
    serve(z, ctl, cfg)


if __name__ == "__main__":
    main()
