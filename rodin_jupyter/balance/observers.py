"""Who wants to hear of a change: the monitor's views, a job's progress rows.

One small list shared by both, so the rules live once: callbacks run outside any lock (so
they may read the object that notifies), and one failing view never stops the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("rodin_jupyter.balance.observers")


class Observers(Generic[T]):
    """A thread-safe list of ``callback(value)``; ``add`` returns the function that removes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[T], None]] = []

    def add(self, callback: Callable[[T], None]) -> Callable[[], None]:
        with self._lock:
            self._callbacks.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return remove

    def clear(self) -> None:
        with self._lock:
            self._callbacks = []

    def __len__(self) -> int:
        with self._lock:
            return len(self._callbacks)

    def notify(self, value: T) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(value)
            except Exception as exc:  # one broken view must not break the others
                log.debug("observer failed: %s", type(exc).__name__)
