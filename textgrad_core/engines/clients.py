"""SDK clients: imported in the background while a run sets up, and one client per endpoint, shared by every role.

Importing the openai SDK costs most of a second and building a client tens of milliseconds (its TLS context).
A backend starts the import in a daemon thread when it is built (`preload`), so the run's own set-up (configs,
data, tasks) overlaps it; the first call joins it. Every backend on the same endpoint (provider, base URL, API
key) gets the same client per event loop, whatever its model, temperature or headers: those go with each
request, so one connection pool and one TLS context serve them all.

Modules a run needs only after its first replies (credit strategies, optimizers, the graph library) can be named
with `import_after_first_request`: they are imported in a daemon thread shortly after the first request is handed
to a client, while the process waits on the network, instead of before the first request could leave.
"""
from __future__ import annotations

import importlib
import threading
from types import ModuleType
from typing import Any, Callable, Hashable

from textgrad_core.engines.looplocal import LoopLocal

SDK_MODULES = {"openai": "openai", "anthropic": "anthropic"}
# What each SDK imports lazily on its first call; warmed in the same thread.
# (anyio's asyncio backend and stream modules: what httpx imports on its first request; measured with sys.modules.)
_ANYIO = ("anyio._backends._asyncio", "anyio._core._sockets", "anyio.streams.memory", "anyio.streams.stapled")
_WARM = {"openai": _ANYIO, "anthropic": _ANYIO + ("anthropic.resources.messages",)}

# How long after the first request is handed to its client the deferred imports start: enough for the first
# wave of concurrent requests to be written (a few ms of CPU each), so the import thread does not compete with them.
AFTER_FIRST_REQUEST_S = 0.05

_lock = threading.Lock()
_threads: dict[str, threading.Thread] = {}
_clients: dict[Hashable, LoopLocal[Any]] = {}
_deferred: list[str] = []
_first_request = threading.Event()


def _import_quietly(provider: str) -> None:
    """The thread's work: import the SDK; a failure is left for the caller's own import to raise (one clear error)."""
    try:
        importlib.import_module(SDK_MODULES[provider])
        for name in _WARM.get(provider, ()):
            importlib.import_module(name)
    except Exception:  # noqa: BLE001 - the main thread's import reports it
        pass


def preload(provider: str) -> None:
    """Start importing `provider`'s SDK in a background thread (once per process)."""
    with _lock:
        if provider in _threads or provider not in SDK_MODULES:
            return
        thread = threading.Thread(target=_import_quietly, args=(provider,), name=f"textgrad-import-{provider}",
                                  daemon=True)
        _threads[provider] = thread
        thread.start()


def sdk(provider: str) -> ModuleType:
    """The SDK module, waiting for a background import that is under way (its errors are raised here)."""
    thread = _threads.get(provider)
    if thread is not None and thread.is_alive() and thread is not threading.current_thread():
        thread.join()
    return importlib.import_module(SDK_MODULES[provider])


def shared_client(key: Hashable, factory: Callable[[], Any]) -> Any:
    """This loop's client for an endpoint `key`, built by `factory` the first time (a client is bound to its loop)."""
    with _lock:
        per_loop = _clients.get(key)
        if per_loop is None:
            per_loop = _clients[key] = LoopLocal(factory)
    client = per_loop.get()
    if not _first_request.is_set():
        _first_request.set()
        _start_deferred_imports()
    return client


def import_after_first_request(modules: list[str] | tuple[str, ...]) -> None:
    """Import `modules` in a daemon thread once the first request has been handed to a client (at once if one was)."""
    with _lock:
        _deferred.extend(m for m in modules if m not in _deferred)
    if _first_request.is_set():
        _start_deferred_imports()


def _start_deferred_imports() -> None:
    with _lock:
        names, _deferred[:] = list(_deferred), []
    if not names:
        return
    thread = threading.Thread(target=_import_deferred, args=(names,), name="textgrad-import-deferred", daemon=True)
    try:
        import asyncio
        asyncio.get_running_loop().call_later(AFTER_FIRST_REQUEST_S, thread.start)
    except RuntimeError:  # no running loop (a sync caller): nothing to wait for
        thread.start()


def _import_deferred(names: list[str]) -> None:
    """The deferred imports; a failure is left for the importing code to raise where it needs the module."""
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the module's own import raises it where it is used
            pass


def clients_built() -> int:
    """How many endpoint client slots this process holds (tests: roles on one endpoint share one)."""
    with _lock:
        return sum(len(per_loop) for per_loop in _clients.values())
