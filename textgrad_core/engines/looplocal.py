"""One object per running event loop: asyncio primitives and HTTP clients are bound to the loop they were made in."""
from __future__ import annotations

import asyncio
import weakref
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """One object per running event loop, made by `factory` the first time that loop asks."""

    def __init__(self, factory: Callable[[], T]):
        self._factory = factory
        self._objects: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T]" = weakref.WeakKeyDictionary()

    def get(self) -> T:
        """This loop's object (call from inside a running loop)."""
        loop = asyncio.get_running_loop()
        obj = self._objects.get(loop)
        if obj is None:
            obj = self._objects[loop] = self._factory()
        return obj

    def __len__(self) -> int:
        return len(self._objects)
