"""Tasks and their jobs, run by the clock, and the expiring download links they hand out.

A task has one job, or two with ``preview_render=true``; each job goes Waiting -> Generating
-> its outcome (Done, or Failed/Canceled when a fault asked for it) over ``job_seconds``.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from .outputs import PREVIEW_NAME

WAITING, GENERATING, DONE, FAILED, CANCELED = "Waiting", "Generating", "Done", "Failed", "Canceled"
FINAL_STATES = (DONE, FAILED, CANCELED)
DEFAULT_URL_TTL = 600.0  # the docs: download URLs expire after about 10 minutes


@dataclass(frozen=True)
class Job:
    """One job of a task; ``files`` join the download list once it is Done."""

    uuid: str
    outcome: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class Task:
    task_uuid: str
    subscription_key: str
    endpoint: str
    jobs: tuple[Job, ...]
    created: float  # time.monotonic()


class TaskBoard:
    """Every submitted task, by task uuid and by subscription key, behind one lock."""

    def __init__(self, job_seconds: float) -> None:
        self.job_seconds = job_seconds
        self._lock = threading.Lock()
        self._tasks: dict[str, Task] = {}
        self._by_key: dict[str, Task] = {}

    def create(self, task_uuid: str, endpoint: str, geometry_format: str,
               preview_job: bool, outcomes: Sequence[str]) -> Task:
        """A task whose jobs end as ``outcomes`` (one per job; Done unless a fault says so)."""
        model = f"model.{geometry_format}"
        files = [(model,), (PREVIEW_NAME,)] if preview_job else [(model, PREVIEW_NAME)]
        jobs = tuple(Job(str(uuid.uuid4()), outcomes[i] if i < len(outcomes) else DONE, f)
                     for i, f in enumerate(files))
        task = Task(task_uuid, uuid.uuid4().hex, endpoint, jobs, time.monotonic())
        with self._lock:
            self._tasks[task.task_uuid] = task
            self._by_key[task.subscription_key] = task
        return task

    def by_uuid(self, task_uuid: str) -> Task | None:
        with self._lock:
            return self._tasks.get(task_uuid)

    def by_key(self, subscription_key: str) -> Task | None:
        with self._lock:
            return self._by_key.get(subscription_key)

    def state(self, task: Task, job: Job) -> str:
        elapsed = time.monotonic() - task.created
        if elapsed >= self.job_seconds:
            return job.outcome
        return GENERATING if elapsed >= self.job_seconds / 3 else WAITING

    def states(self, task: Task) -> list[tuple[str, str]]:
        return [(job.uuid, self.state(task, job)) for job in task.jobs]

    def running(self) -> int:
        """Tasks with a job not yet finished: what the parallelism limit counts."""
        with self._lock:
            tasks = list(self._tasks.values())
        return sum(1 for t in tasks if any(self.state(t, j) not in FINAL_STATES for j in t.jobs))

    def ready_files(self, task: Task) -> list[str]:
        """Files of the jobs that are Done: all of them at the end, fewer on an early call."""
        return [name for job in task.jobs if self.state(task, job) == DONE for name in job.files]


class DownloadLinks:
    """Presigned-style links: a random token per file that stops working after ``ttl``."""

    def __init__(self, ttl: float = DEFAULT_URL_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._links: dict[str, tuple[str, str, float]] = {}  # token -> task, name, expiry

    def issue(self, task_uuid: str, name: str) -> str:
        """A path ``/files/<task>/<token>/<name>`` valid for ``ttl`` seconds from now."""
        token = secrets.token_urlsafe(12)
        with self._lock:
            self._links[token] = (task_uuid, name, time.monotonic() + self.ttl)
        return f"/files/{task_uuid}/{token}/{name}"

    def expire_all(self) -> None:
        """Make every link handed out so far answer 403, as if ``ttl`` had passed."""
        with self._lock:
            self._links = {t: (task, name, 0.0) for t, (task, name, _) in self._links.items()}

    def resolve(self, path: str) -> tuple[str, str] | bool | None:
        """(task, name) for a live link; False for an expired one; None for an unknown path."""
        parts = path.split("/")  # ["", "files", task, token, name]
        if len(parts) != 5:
            return None
        with self._lock:
            link = self._links.get(parts[3])
        if link is None or (link[0], link[1]) != (parts[2], parts[4]):
            return None
        if time.monotonic() >= link[2]:
            return False
        return link[0], link[1]
