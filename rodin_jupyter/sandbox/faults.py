"""Fault injection: the failures people meet on the real service, on demand.

Two kinds. A *response fault* replaces (or, with ``status=None``, follows) the real answer of
the next requests to a path: an outage, a throttled poll, a refusal, a hang-up after the
charge. A *job fault* makes the jobs of the next submitted tasks end Failed or Canceled.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from .tasks import CANCELED, DONE, FAILED


@dataclass
class Fault:
    """One response fault; ``times`` None lasts until cleared."""

    path: str | None
    status: int | None
    body: bytes
    content_type: str
    delay: float
    times: int | None
    headers: dict[str, str]
    drop: bool


@dataclass
class JobFault:
    job: int | None  # which job of the task (None: every job)
    outcome: str
    times: int


def make_fault(path: str | None, status: int | None, body: bytes | str, content_type: str,
               delay: float, times: int | None, headers: Mapping[str, str] | None,
               drop: bool) -> Fault:
    """A checked Fault (``path`` already normalized by the caller)."""
    if times is not None and times < 1:
        raise ValueError("times must be >= 1 or None")
    if delay < 0:
        raise ValueError("delay must be >= 0")
    return Fault(path=path, status=status,
                 body=body.encode("utf-8") if isinstance(body, str) else bytes(body),
                 content_type=content_type, delay=float(delay), times=times,
                 headers=dict(headers or {}), drop=drop)


class FaultPlan:
    """Pending faults, taken in the order they were added, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._job_faults: list[JobFault] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def add_job_fault(self, job: int | None, outcome: str, times: int) -> None:
        if outcome not in (FAILED, CANCELED):
            raise ValueError(f"a job fault ends a job as {FAILED} or {CANCELED}, not {outcome!r}")
        if times < 1:
            raise ValueError("times must be >= 1")
        if job is not None and job < 0:
            raise ValueError("job is a job's index in its task (0 = the model job)")
        with self._lock:
            self._job_faults.append(JobFault(job, outcome, times))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._job_faults.clear()

    def take(self, path: str) -> Fault | None:
        """The first fault for ``path`` (or for any path), counting one use of it."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.path is None or fault.path == path:
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            del self._faults[i]
                    return fault
        return None

    def take_outcomes(self, job_count: int) -> list[str]:
        """How each job of a task being created ends (Done unless a job fault is pending)."""
        outcomes = [DONE] * job_count
        with self._lock:
            if not self._job_faults:
                return outcomes
            fault = self._job_faults[0]
            fault.times -= 1
            if fault.times <= 0:
                del self._job_faults[0]
        for i in range(job_count):  # an index past the task's jobs means its last job
            if fault.job is None or min(fault.job, job_count - 1) == i:
                outcomes[i] = fault.outcome
        return outcomes
