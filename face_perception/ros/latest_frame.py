"""Newest-frame-wins hand-over from a subscription callback to a worker thread.

The callback only stores; the worker takes the newest item. An item that is replaced before the
worker took it is counted as stale, so memory and latency stay bounded however fast frames come.
"""
from __future__ import annotations

import threading
from typing import Any, Optional


class LatestFrame:
    """A one-slot mailbox: ``put`` replaces, ``take`` empties; thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = None
        self._full = False
        self._closed = False

    def put(self, item: Any) -> int:
        """Store ``item``; returns 1 when it replaced an unprocessed (now stale) item, else 0."""
        with self._cond:
            replaced = int(self._full)
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: Optional[float] = None) -> Optional[Any]:
        """The newest item (and empty the slot), or None after ``timeout`` or once closed."""
        with self._cond:
            if not self._full and not self._closed:
                self._cond.wait(timeout)
            if not self._full:
                return None
            item, self._item, self._full = self._item, None, False
            return item

    def clear(self) -> int:
        with self._cond:
            dropped = int(self._full)
            self._item, self._full = None, False
            return dropped

    def close(self) -> None:
        """Wake a waiting worker so it can see that it must stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False
