"""One background thread polls ``/status`` for every job in the kernel, politely.

Each task is polled every ``settings.poll_interval`` seconds; after an error the pause
doubles (up to ``settings.max_backoff``). A 429 pauses *every* task's polling until its
``Retry-After`` has passed: rate limits are per account, not per task. The thread
ends by itself when no job is left running, and :func:`shutdown` (``%unload_ext``,
interpreter exit) stops and joins it: no thread is left behind.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from dataclasses import dataclass

from rodin_jupyter.errors import RateLimitedError, RodinError
from rodin_jupyter.generation.job import Job
from rodin_jupyter.generation.settings import settings

log = logging.getLogger("rodin_jupyter.generation.poller")
JOIN_TIMEOUT = 5.0
THREAD_NAME = "rodin-job-poller"


@dataclass
class _Watch:
    due: float
    errors: int = 0


def next_pause(interval: float, errors: int, retry_after: float | None) -> float:
    """Seconds to the next poll: the interval, doubled per error, at least ``Retry-After``."""
    pause = interval * (2 ** min(errors, 10)) if errors else interval
    if retry_after is not None:
        pause = max(pause, retry_after)
    return min(max(pause, interval), max(settings.max_backoff, interval))


class Poller:
    """The kernel's job poller: ``watch(job)`` starts it, ``shutdown()`` stops it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: dict[Job, _Watch] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._not_before = 0.0  # monotonic; after a 429 no task is polled before it

    def watch(self, job: Job) -> None:
        with self._lock:
            if job not in self._watched:
                self._watched[job] = _Watch(due=time.monotonic())
            if self._thread is None or not self._thread.is_alive():
                self._stop = threading.Event()  # one per thread: an old one stays stopped
                self._thread = threading.Thread(target=self._run, args=(self._stop,),
                                                name=THREAD_NAME, daemon=True)
                self._thread.start()
        self._wake.set()

    def watched(self) -> list[Job]:
        with self._lock:
            return list(self._watched)

    @property
    def thread(self) -> threading.Thread | None:
        with self._lock:
            return self._thread

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            now = time.monotonic()
            with self._lock:
                if stop.is_set():
                    return
                for job in [j for j in self._watched if j.done]:
                    del self._watched[job]
                if not self._watched:
                    self._thread = None
                    return
                due = [j for j, w in self._watched.items() if w.due <= now]
                soonest = min(w.due for w in self._watched.values())
                if now < self._not_before:  # rate limited: nobody polls until it passes
                    due, soonest = [], self._not_before
            if due:  # one request, then the gap: the pace holds for any number of jobs
                self._poll(min(due, key=lambda j: self._watched_due(j)))
                stop.wait(settings.status_gap)
            else:
                self._wake.wait(max(0.0, min(soonest - now, settings.max_backoff)))
                self._wake.clear()

    def _poll(self, job: Job) -> None:
        retry_after = None
        rate_limited = False
        try:
            job.poll()
            errors = 0
        except RateLimitedError as exc:
            retry_after, rate_limited = exc.retry_after, True
            errors = self._errors(job) + 1
        except RodinError as exc:
            errors = self._errors(job) + 1
            log.debug("status poll failed: %s", exc)
        except Exception as exc:  # a bug must not kill the thread silently for every job
            errors = self._errors(job) + 1
            job.record_error(RodinError(f"status poll failed ({type(exc).__name__})"))
        pause = next_pause(settings.poll_interval, errors, retry_after)
        with self._lock:
            if rate_limited:
                self._not_before = max(self._not_before, time.monotonic() + pause)
            watch = self._watched.get(job)
            if watch is not None:
                watch.errors = errors
                watch.due = time.monotonic() + pause

    def _watched_due(self, job: Job) -> float:
        with self._lock:
            watch = self._watched.get(job)
            return watch.due if watch else 0.0

    def _errors(self, job: Job) -> int:
        with self._lock:
            watch = self._watched.get(job)
            return watch.errors if watch else 0

    def shutdown(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Stop polling and join the thread; the jobs keep their last known state."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._watched.clear()
            self._stop.set()
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


_poller: Poller | None = None
_poller_lock = threading.Lock()


def get_poller() -> Poller:
    """The process-wide poller (created on first use, stopped at interpreter exit)."""
    global _poller
    with _poller_lock:
        if _poller is None:
            _poller = Poller()
            atexit.register(shutdown)
        return _poller


def shutdown(timeout: float = JOIN_TIMEOUT) -> None:
    """``%unload_ext`` and interpreter exit: stop the poller thread, if one runs."""
    with _poller_lock:
        poller = _poller
    if poller is not None:
        poller.shutdown(timeout)


def poller_threads() -> list[threading.Thread]:
    """Live poller threads (for tests: none after shutdown)."""
    return [t for t in threading.enumerate() if t.name == THREAD_NAME]
