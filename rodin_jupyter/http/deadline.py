"""A deadline for a whole HTTP attempt, which requests' timeouts alone cannot give.

requests' timeouts bound each socket read, not the whole answer: a server sending one byte
a second never trips them. A watchdog timer hangs up the connection when an attempt
outlives what is left of the deadline; the connection class tells it which socket that is.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from requests.adapters import HTTPAdapter

_current = threading.local()


def _hang_up(sock: Any) -> None:
    with contextlib.suppress(Exception):
        # socket.socket.shutdown, not SSLSocket.shutdown: wake the reader, keep the TLS state.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Watchdog:
    """Hangs up the attempt's connection after ``seconds``; ``fired`` says it did."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._lock = threading.Lock()
        self._sock: Any = None
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True
        self._timer.name = "rodin-deadline"

    def attach(self, sock: Any) -> None:
        with self._lock:
            self._sock = sock
            fired = self.fired
        if fired:
            _hang_up(sock)

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            sock = self._sock
        if sock is not None:
            _hang_up(sock)

    def __enter__(self) -> Watchdog:
        try:
            self._timer.start()
        except RuntimeError:  # no threads here (e.g. at interpreter exit): per-read timeouts
            return self
        _current.watchdog = self
        return self

    def __exit__(self, *exc: object) -> None:
        _current.watchdog = None
        with self._lock:
            self._sock = None
        self._timer.cancel()
        if self._timer.is_alive():
            self._timer.join()


class _WatchedConnection:
    """Mixed into urllib3's connection classes: hand the socket to the current watchdog."""

    sock: Any

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        watchdog = getattr(_current, "watchdog", None)
        if watchdog is not None and self.sock is not None:
            watchdog.attach(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


_watched_classes: dict[type, type] = {}


def _watch_pool(pool: Any) -> Any:
    cls = getattr(pool, "ConnectionCls", None)
    if isinstance(cls, type) and not issubclass(cls, _WatchedConnection):
        watched = _watched_classes.get(cls)
        if watched is None:
            watched = type(f"Watched{cls.__name__}", (_WatchedConnection, cls), {})
            _watched_classes[cls] = watched
        pool.ConnectionCls = watched
    return pool


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter, with connections a :class:`Watchdog` can hang up."""

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:  # requests < 2.32.2
        return _watch_pool(super().get_connection(*args, **kwargs))

    def get_connection_with_tls_context(self, *args: Any, **kwargs: Any) -> Any:
        return _watch_pool(super().get_connection_with_tls_context(*args, **kwargs))
