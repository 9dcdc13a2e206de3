"""SDK clients: imported in the background while a run sets up, and one client per endpoint, shared by every role.

Importing the openai SDK costs most of a second and building a client tens of milliseconds (its TLS context).
A backend starts the import in a daemon thread when it is built (`preload`), so the run's own set-up (configs,
data, tasks) overlaps it; the first call joins it. Every backend on the same endpoint (provider, base URL, API
key) gets the same client per event loop, whatever its model, temperature or headers: those go with each
request, so one connection pool and one TLS context serve them all.
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

_lock = threading.Lock()
_threads: dict[str, threading.Thread] = {}
_clients: dict[Hashable, LoopLocal[Any]] = {}


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
    return per_loop.get()


def clients_built() -> int:
    """How many endpoint client slots this process holds (tests: roles on one endpoint share one)."""
    with _lock:
        return sum(len(per_loop) for per_loop in _clients.values())
