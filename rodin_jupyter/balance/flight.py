"""One balance request in flight, shared by everyone who asked meanwhile."""

from __future__ import annotations

import threading
import time

from rodin_jupyter.errors import RodinError
from rodin_jupyter.http.client import DEFAULT_DEADLINE
from rodin_jupyter.http.reading import BalanceReading

WAIT_LIMIT = 2 * DEFAULT_DEADLINE + 5.0
"""Longest any caller waits on another's balance check (the client's own deadline is less)."""


class Flight:
    """One balance request in flight and, once done, its outcome for everyone who waited.

    It belongs to the configuration (epoch) it started under and to the thread leading it:
    a flight whose leader was interrupted, or whose configuration is gone, is never joined.
    """

    __slots__ = ("done", "epoch", "leader", "limit", "result", "started")

    def __init__(self, epoch: int) -> None:
        self.done = threading.Event()
        self.epoch = epoch
        self.leader = threading.current_thread()
        self.started = time.monotonic()
        self.limit = WAIT_LIMIT
        self.result: BalanceReading | RodinError | None = None

    def abandoned(self) -> bool:
        """Nobody will finish it: its leader is gone, is us (interrupted), or it overran."""
        return (not self.leader.is_alive() or self.leader is threading.current_thread()
                or time.monotonic() - self.started > self.limit)

    def land(self, result: BalanceReading | RodinError) -> None:
        if not self.done.is_set():
            self.result = result
            self.done.set()
