"""A deadline for a whole HTTP attempt, which requests' timeouts alone cannot give.

requests' timeouts bound each socket read, not the whole answer: a server (or a proxy
answering CONNECT) sending one byte a second never trips them, and name lookup is not
bounded at all. So every phase counts against one deadline:

* name lookup runs in a helper thread, waited for no longer than what is left;
* connecting is given at most what is left;
* from the moment the socket exists (proxy CONNECT, TLS handshake, request, answer) the
  process's :class:`DeadlineThread` hangs it up once the attempt outlives its deadline.

One long-lived thread per process, not a timer per attempt: starting and joining a thread
for every request was most of the warm balance check's cost above a bare kept-alive GET.
"""

from __future__ import annotations

import contextlib
import heapq
import ipaddress
import itertools
import os
import socket
import threading
import time
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

_current = threading.local()


def _hang_up(sock: Any) -> None:
    with contextlib.suppress(Exception):
        # socket.socket.shutdown, not SSLSocket.shutdown: wake the reader, keep the TLS state.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class Watchdog:
    """One attempt's deadline: hangs up the attempt's socket when it passes; ``fired`` says so.

    Use as a context manager around the attempt; the connection class finds it through a
    thread-local and tells it which socket is the attempt's.
    """

    def __init__(self, seconds: float, owner: DeadlineThread | None = None) -> None:
        self.fired = False
        self.expires = time.monotonic() + max(0.0, seconds)
        self.done = False
        self._watched = False
        self._lock = threading.Lock()
        self._sock: Any = None
        self._owner = owner if owner is not None else _shared

    def remaining(self) -> float:
        """Seconds left before the deadline (0 once it passed)."""
        return max(0.0, self.expires - time.monotonic())

    def attach(self, sock: Any) -> None:
        """The attempt's socket: hung up now if the deadline already passed."""
        with self._lock:
            self._sock = sock
            fired = self.fired
        if fired:
            _hang_up(sock)

    def expire(self) -> None:
        """The deadline passed (noticed by the thread, or by a bounded wait such as a lookup)."""
        with self._lock:
            if self.done:
                return
            self.fired = True
            sock = self._sock
        if sock is not None:
            _hang_up(sock)

    def __enter__(self) -> Watchdog:
        self._watched = self._owner.watch(self)
        if self._watched:
            _current.watchdog = self
        return self

    def __exit__(self, *exc: object) -> None:
        _current.watchdog = None
        with self._lock:
            self.done = True
            self._sock = None
        if self._watched:
            self._owner.finished()


class DeadlineThread:
    """One thread that sleeps until the earliest deadline of the attempts in flight, then
    hangs their sockets up.

    Started with the module and never ended (a daemon asleep on a condition): a thread
    that came and went with each client or attempt costs its start on every balance check
    and makes "which threads are running" depend on when the last one happened to end. A
    forked child starts its own on first use: the parent's thread does not exist there.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Watchdog]] = []
        self._order = itertools.count()
        self._live = 0
        self._thread: threading.Thread | None = None

    def start(self) -> bool:
        """Make sure the thread runs; False where no thread can start (interpreter exit)."""
        if self._pid != os.getpid():
            self._reset()
        with self._cond:
            return self._start_locked()

    def _start_locked(self) -> bool:
        if self._thread is not None and self._thread.is_alive():
            return True
        thread = threading.Thread(target=self._run, name="rodin-deadline", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no new threads now: per-read timeouts still apply
            return False
        self._thread = thread
        return True

    def watch(self, watchdog: Watchdog) -> bool:
        """Enforce ``watchdog``'s deadline; False where no thread can run it."""
        if self._pid != os.getpid():
            self._reset()
        with self._cond:
            if not self._start_locked():
                return False
            earliest = not self._heap or watchdog.expires < self._heap[0][0]
            heapq.heappush(self._heap, (watchdog.expires, next(self._order), watchdog))
            self._live += 1
            if len(self._heap) > 64 and len(self._heap) > 4 * self._live:
                self._heap = [entry for entry in self._heap if not entry[2].done]
                heapq.heapify(self._heap)
            if earliest:
                self._cond.notify()
        return True

    def finished(self) -> None:
        """An attempt ended (its entry is dropped lazily, when it reaches the top)."""
        with self._cond:
            self._live = max(0, self._live - 1)

    def _run(self) -> None:
        while True:
            with self._cond:
                heap = self._heap
                now = time.monotonic()
                while heap and heap[0][2].done:
                    heapq.heappop(heap)
                due: list[Watchdog] = []
                while heap and heap[0][0] <= now:
                    due.append(heapq.heappop(heap)[2])
                if not due:
                    self._cond.wait(heap[0][0] - now if heap else None)
                    continue
            for watchdog in due:
                watchdog.expire()


_shared = DeadlineThread()
"""The process's deadline thread, for every :class:`Watchdog` made without an owner."""
_shared.start()


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def lookup(host: str, port: int, seconds: float) -> list[str]:
    """Addresses for ``host``, or ``TimeoutError`` after ``seconds`` (getaddrinfo has no timeout).

    The lookup runs in a helper thread; a lookup that outlives the wait is left to finish
    on its own (its answer is dropped).
    """
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["answer"] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except BaseException as exc:  # handed to the waiting thread
            box["error"] = exc
        done.set()

    threading.Thread(target=run, name="rodin-lookup", daemon=True).start()
    if not done.wait(max(0.0, seconds)):
        raise TimeoutError(f"looking up {host} took too long")
    if "error" in box:
        raise box["error"]
    addresses: list[str] = []
    for _family, _type, _proto, _name, sockaddr in box["answer"]:
        if str(sockaddr[0]) not in addresses:
            addresses.append(str(sockaddr[0]))
    return addresses


class _WatchedConnection:
    """Mixed into urllib3's connection classes: every phase of a connection under the deadline."""

    sock: Any
    timeout: Any
    _dns_host: str

    def _new_conn(self) -> Any:
        watchdog: Watchdog | None = getattr(_current, "watchdog", None)
        parent: Any = super()
        if watchdog is None:
            return parent._new_conn()
        host = self._dns_host
        if _is_address(host):
            addresses = [host]
        else:
            try:
                addresses = lookup(host, int(getattr(self, "port", 0) or 0),
                                   watchdog.remaining())
            except TimeoutError:
                watchdog.expire()
                raise ConnectTimeoutError(self, f"Name lookup of {host} ran out of time.") from None
            except OSError as exc:
                raise NewConnectionError(self, f"Failed to resolve {host} ({exc}).") from None  # type: ignore[arg-type]
        timeout = self.timeout
        try:
            for index, address in enumerate(addresses):
                left = watchdog.remaining()
                if left <= 0:
                    watchdog.expire()
                    raise ConnectTimeoutError(self, f"Connecting to {host} ran out of time.")
                if isinstance(timeout, (int, float)):
                    self.timeout = min(timeout, left)
                self._dns_host = address
                try:
                    sock = parent._new_conn()
                except (ConnectTimeoutError, NewConnectionError):
                    if index == len(addresses) - 1:
                        raise
                    continue
                watchdog.attach(sock)  # from here on (CONNECT, TLS, answer) a hang-up ends it
                return sock
            raise NewConnectionError(self, f"No address found for {host}.")  # type: ignore[arg-type]
        finally:
            self._dns_host = host
            self.timeout = timeout

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
