"""The sandbox's record of the requests it saw: method, path, status -- never headers."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from .httpd import path_for_log

logger = logging.getLogger("rodin_jupyter.sandbox")


@dataclass(frozen=True)
class RequestRecord:
    """What the sandbox saw; deliberately without headers, so the key is never stored.

    ``path`` is relative to ``/api/v2`` for API calls (``"/rodin"``) and the raw path
    otherwise (``"/files/<task>/<token>/model.glb"``); ``status`` is 0 when no answer was sent.
    """

    method: str
    path: str
    status: int
    at: float
    authorized: bool


class RequestLog:
    """Every request the sandbox answered (or hung up on), in arrival order; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def record(self, method: str, path: str, status: int, authorized: bool, at: float) -> None:
        """Called before the answer is written, so a client never sees an unrecorded reply.

        Keeps method, path and status only; headers (and so the key) are never stored.
        """
        with self._lock:
            self._records.append(RequestRecord(method, path, status, at, authorized))
        logger.debug("sandbox %s %s -> %s", method, path_for_log(path), status)

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Records matching ``method`` and an already normalized ``path`` (None matches any)."""
        return sum(1 for r in self.records()
                   if (method is None or r.method == method.upper())
                   and (path is None or r.path == path))
