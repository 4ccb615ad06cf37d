"""A submitted task and its jobs: state, elapsed time, waiting, downloads and previews.

A :class:`Job` is one submission (one task uuid, one subscription key); the service may run
several jobs for it (``preview_render=true`` adds one). The background poller
(``poller.py``) updates it; views subscribe to changes. Nothing here imports IPython.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from rodin_jupyter.balance.observers import Observers
from rodin_jupyter.errors import KeyRefusedError, RodinError, RodinTimeoutError
from rodin_jupyter.http import jobs_api
from rodin_jupyter.http.client import RodinClient

TERMINAL = frozenset({"Done", "Failed", "Canceled"})
FAILED = frozenset({"Failed", "Canceled"})


class JobFailedError(RodinError):
    """A job of the task ended Failed or Canceled."""


class Interrupted(RodinError):
    """Ctrl-C (a kernel interrupt) during ``wait()`` or ``download()``: one line saying
    where things stand; the cell still fails, so "Run All" stops there."""


def short(uuid: str) -> str:
    """The first block of a uuid, for people."""
    return uuid.split("-", 1)[0][:8]


def default_client() -> RodinClient:
    """The kernel's shared client (same key and base URL as the balance)."""
    from rodin_jupyter.balance.monitor import get_monitor

    return get_monitor().client()


class Job:
    """One submitted task: ``job.wait()``, ``job.download(folder)``, ``job.preview()``.

    Shown in a notebook as a live progress view; its repr is one line with the ids that
    :meth:`attach` needs after a kernel restart.
    """

    def __init__(self, task_uuid: str, subscription_key: str | None, *,
                 job_uuids: tuple[str, ...] = (), price: Decimal | None = None,
                 fields: Mapping[str, Any] | None = None,
                 client: RodinClient | None = None, label: str = "") -> None:
        self.task_uuid = task_uuid
        self.subscription_key = subscription_key
        self.price = price
        self.label = label
        self.fields = dict(fields or {})
        self._client = client
        self._lock = threading.Lock()
        self._states: dict[str, str] = {u: "Waiting" for u in job_uuids}
        self._finished_at: dict[str, float] = {}
        self.started = time.monotonic()
        self.error: str | None = None
        self.fatal = False
        self.polls = 0
        self._done = threading.Event()
        self._observers: Observers[None] = Observers()
        self.paths: list[Path] = []

    # -- attaching -----------------------------------------------------------------

    @classmethod
    def attach(cls, task_uuid: str, subscription_key: str | None = None,
               client: RodinClient | None = None, *, watch: bool = True) -> Job:
        """Resume a task submitted earlier (after a kernel restart): nothing is charged.

        Without the subscription key (the ledger keeps only the task uuid) the task counts
        as done once ``/download`` lists its files.
        """
        key = subscription_key.strip() if subscription_key else None
        job = cls(task_uuid.strip(), key, client=client, label="attached")
        if watch:
            job.watch()
        return job

    @property
    def client(self) -> RodinClient:
        if self._client is None:
            self._client = default_client()
        return self._client

    # -- state -----------------------------------------------------------------------

    @property
    def states(self) -> dict[str, str]:
        """Job uuid -> Waiting / Generating / Done / Failed (a copy)."""
        with self._lock:
            return dict(self._states)

    def elapsed(self, job_uuid: str | None = None) -> float:
        """Seconds since submission (until that job finished, when it has)."""
        with self._lock:
            end = self._finished_at.get(job_uuid or "") if job_uuid else None
            if job_uuid is None and self._done.is_set() and self._finished_at:
                end = max(self._finished_at.values())
        return max(0.0, (end or time.monotonic()) - self.started)

    @property
    def done(self) -> bool:
        """Every job has ended (Done, Failed or Canceled), or polling gave up for good."""
        return self._done.is_set()

    @property
    def failed(self) -> list[str]:
        with self._lock:
            return [u for u, s in self._states.items() if s in FAILED]

    @property
    def succeeded(self) -> bool:
        return self.done and not self.fatal and not self.failed

    def subscribe(self, observer: Callable[[], None]) -> Callable[[], None]:
        """Call ``observer()`` (from the poller's thread) after every change."""
        return self._observers.add(lambda _: observer())

    def _notify(self) -> None:
        self._observers.notify(None)

    def apply(self, states: list[tuple[str, str]]) -> None:
        """Record a status answer (the poller calls this)."""
        now = time.monotonic()
        with self._lock:
            self.polls += 1
            self.error = None
            for uuid, state in states:
                self._states[uuid] = state
                if state in TERMINAL:
                    self._finished_at.setdefault(uuid, now)
            finished = bool(self._states) and all(s in TERMINAL for s in self._states.values())
        if finished:
            self._done.set()
        self._notify()

    def record_error(self, error: RodinError) -> None:
        """A poll failed; a refused key or unknown task ends polling (they cannot heal)."""
        with self._lock:
            self.error = str(error)
            if isinstance(error, (KeyRefusedError, jobs_api.TaskNotFound)):
                self.fatal = True
        if self.fatal:
            self._done.set()
        self._notify()

    def poll(self) -> None:
        """Ask ``/status`` once now (errors are recorded, and raised)."""
        try:
            if self.subscription_key is None:
                listed = jobs_api.download_list(self.client, self.task_uuid)
                states = [(self.task_uuid, "Done")] if listed else []
            else:
                states = jobs_api.status(self.client, self.subscription_key)
        except RodinError as exc:
            self.record_error(exc)
            raise
        self.apply(states)

    # -- waiting ---------------------------------------------------------------------

    def watch(self) -> None:
        """Have the background poller follow this job (a no-op once it is done)."""
        if not self.done:
            from rodin_jupyter.generation.poller import get_poller

            get_poller().watch(self)

    def wait(self, timeout: float | None = None) -> Job:
        """Return when every job is Done; a one-line error names a failed job or the timeout."""
        try:
            self._wait(timeout)
        except KeyboardInterrupt:
            raise Interrupted(
                f"interrupted: task {self.task_uuid} is still running ({self.summary()}); "
                "nothing is lost: job.wait() resumes.") from None
        self.raise_for_failure()
        return self

    def _wait(self, timeout: float | None) -> None:
        limit = None if timeout is None else time.monotonic() + timeout
        while not self._done.is_set():
            self.watch()  # re-arms the poller if it was shut down (``%unload_ext``)
            left = 1.0 if limit is None else min(1.0, limit - time.monotonic())
            if left <= 0:
                raise RodinTimeoutError(
                    f"Task {short(self.task_uuid)} is not done after {timeout:g} s "
                    f"({self.summary()}); call job.wait() again to keep waiting.")
            self._done.wait(left)

    def raise_for_failure(self) -> None:
        if self.fatal:
            raise JobFailedError(f"Task {short(self.task_uuid)}: polling stopped: {self.error}")
        failed = self.failed
        if failed:
            states = self.states
            raise JobFailedError(
                f"Task {short(self.task_uuid)}: job {failed[0]} ended {states[failed[0]]}; "
                "nothing to download for it (the service decides about refunds).")

    # -- files -----------------------------------------------------------------------

    def download(self, folder: str | Path | None = None) -> list[Path]:
        """Write the task's files into ``folder`` (temp file, then rename); returns the paths."""
        from rodin_jupyter.generation.files import download_task

        self.wait()
        try:
            self.paths = download_task(self, folder)
        except KeyboardInterrupt:
            raise Interrupted(
                f"download of task {short(self.task_uuid)} interrupted; no partial file kept; "
                "call job.download(folder) again.") from None
        self._notify()
        return list(self.paths)

    def preview(self, folder: str | Path | None = None) -> Any:
        """The preview image and an interactive 3D view (downloads first when needed)."""
        from rodin_jupyter.generation.preview import Preview

        if not self.paths:
            self.download(folder)
        return Preview(self.paths, title=f"task {short(self.task_uuid)}")

    # -- text ------------------------------------------------------------------------

    def summary(self) -> str:
        states = list(self.states.values())
        if not states:
            return "submitted, no status yet"
        counts = {s: states.count(s) for s in dict.fromkeys(states)}
        return ", ".join(f"{n} {s}" for s, n in counts.items())

    def __repr__(self) -> str:
        price = f", {self.price.normalize():f} credits" if self.price is not None else ""
        return (f"<rodin Job task_uuid={self.task_uuid!r} "
                f"subscription_key={self.subscription_key!r}: {self.summary()}{price}>")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None,
                          **kwargs: Any) -> dict[str, Any]:
        from rodin_jupyter.widgets.jobs import progress_bundle

        return progress_bundle(self, [self])
