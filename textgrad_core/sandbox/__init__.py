"""Sandboxed execution of untrusted, LLM-written Python code.

This package is the single place where model-generated code runs: HumanEval
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
Every run starts ``sys.executable`` twice in the same process (``execve``), each time
running one of the package's two child scripts by path:

*Stage 1 (launcher.py)* - ``python -I -S -B launcher.py`` started with ``start_new_session`` (own
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
    every top-level directory except the system's (``/usr``, ``/lib*``, ``/bin``,
    ``/sbin``, ``/dev``, ``/proc``, ``/sys``) - so the project (``.env``, data),
    the home directories, ``/tmp``, ``/var``, ``/run``... - as well as ``/etc``
    (but for a few harmless files such as ``ld.so.cache`` and ``passwd``) and
    ``/dev/shm`` covered by an empty tmpfs, top-level files by ``/dev/null``,
    with only the Python installation, the runner script and the run's temp
    dir re-exposed through bind mounts, so reads outside them fail even
    without the audit hook; the temporary directory
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

The launcher then ``execve``s *stage 2* (``runner.py``) with ``-s -P -B`` (the flags that ``-I``
implies, except ``-E``: the environment is built from scratch and contains only
``LANG``/``LC_ALL``, ``PYTHONHASHSEED=0`` (deterministic ``str`` hashing,
which ``-E`` would silently ignore), ``PYTHONUTF8``/``PYTHONIOENCODING``,
``PYTHONDONTWRITEBYTECODE`` and ``HOME``/``TMPDIR`` pointing at the temp dir -
no ``PATH``, nothing inherited from the parent, so no API keys).

*Stage 2 (runner.py)* installs a ``sys.addaudithook`` guard before any user code
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
  as are forged code objects (``code.__new__``: ``types.CodeType(...)``,
  ``code.replace()``; ``marshal.load``/``loads``, also reached through
  ``_imp.get_frozen_object``; copies of the guard's functions through
  ``FunctionType``) - later imports compile from source for that reason -,
  ``gc.get_objects``/
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

Modules
-------
``limits``   SandboxLimits and the job description;
``layers``   the child's view of the filesystem, its uid and environment, its config;
``launch``   spawning, output capture, timeout, killing and cleanup;
``results``  status records and the single place a SandboxResult is built;
``pool`` / ``zygote``  the warm pool: a hardened zygote that forks a fresh child per call (what warm runs share
             with their siblings, and the timings, are in docs/sandbox.md);
``checked`` / ``wire``  checked runs (``acheck_program``): the trusted judge child and the program child;
``launcher.py`` / ``runner.py``  the two child scripts (stage 1 / stage 2), run by path.
This module holds the public API and the fallback policy.
"""


from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Any

from textgrad_core.sandbox.launch import execute_once, loop_semaphore
from textgrad_core.sandbox.checked import CheckedRun, Pair, run_pair
from textgrad_core.sandbox.pool import execute_warm
from textgrad_core.sandbox.limits import (
    MAX_CONCURRENT_SANDBOXES,
    Job,
    SandboxLimits,
    validate_files,
)
from textgrad_core.sandbox.results import Outcome, SandboxResult

__all__ = [
    "SandboxLimits",
    "SandboxResult",
    "run_code",
    "arun_code",
    "call_function",
    "acall_function",
    "MAX_CONCURRENT_SANDBOXES",
    "CheckedRun",
    "acheck_program",
    "check_program",
]

logger = logging.getLogger(__name__)

_kernel_layers_ok = True  # set to False when the kernel layers prevent the child from starting


async def _execute(job: Job) -> Outcome:
    """Run ``job`` within the bound on concurrent children."""
    async with loop_semaphore():
        return await _execute_unbounded(job)


async def execute_pair(judge: Job, served: Job) -> tuple[Outcome, Outcome]:
    """Run a checked run's two children (see ``checked.py``); together they hold one slot,
    so pairs can never wait on each other's slots."""
    async with loop_semaphore():
        return await run_pair(_execute_unbounded, judge, served)


async def _execute_unbounded(job: Job) -> Outcome:
    """Run ``job`` warm (a fork of the zygote) or cold; when the kernel layers keep the child
    from starting at all, retry once without them and, if that works, stay without them for
    the rest of the process."""
    global _kernel_layers_ok
    kernel = job.kernel and _kernel_layers_ok
    if job.warm:
        warm = await execute_warm(job, kernel=kernel)
        if warm is not None:
            return warm
    outcome = await execute_once(job, kernel=kernel)
    st = outcome.status
    if (
        kernel
        and "started" not in st
        and not outcome.result.timed_out
        and outcome.result.returncode not in (0, None)
    ):
        retry = await execute_once(job, kernel=False)
        if "started" in retry.status:
            _kernel_layers_ok = False
            logger.warning(
                "sandbox: the child did not start with kernel isolation layers (%s); "
                "continuing with rlimits + audit hook only",
                outcome.result.error,
            )
            return retry
    return outcome


def _run_sync(coro):
    """Run ``coro`` to completion from synchronous code, even inside a running loop."""
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
    job = Job(code=code, limits=limits or SandboxLimits(), stdin=stdin or "",
               files=validate_files(files))
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
    job = Job(code=source, limits=limits or SandboxLimits(), mode="call",
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


async def _arun_without_audit(
    code: str, limits: SandboxLimits | None = None, *, stdin: str = ""
) -> SandboxResult:
    """Test helper: run with the audit hook disabled, so only the kernel layers protect.

    Deliberately not part of the public API, and out of reach of user code: the switch
    travels in the parent's job description, which the child's program cannot choose."""
    job = Job(code=code, limits=limits or SandboxLimits(), stdin=stdin, audit=False)
    return (await _execute(job)).result


async def acheck_program(
    program: str,
    judge_source: str,
    judge_function: str,
    args: list,
    *,
    limits: SandboxLimits | None = None,
) -> CheckedRun:
    """Run ``program`` in one sandbox child and ``judge_function(*args)`` from the trusted
    ``judge_source`` in another; the judge reaches the program only through ``__peer__``
    (see ``checked.py``), and its return value is the verdict."""
    pair = Pair(program, judge_source, judge_function, args, limits)
    try:
        judged, ran = await execute_pair(pair.judge, pair.served)
    finally:
        pair.close()
    return Pair.outcome(judged, ran)


def check_program(
    program: str,
    judge_source: str,
    judge_function: str,
    args: list,
    *,
    limits: SandboxLimits | None = None,
) -> CheckedRun:
    """Synchronous :func:`acheck_program`."""
    return _run_sync(acheck_program(program, judge_source, judge_function, args, limits=limits))
