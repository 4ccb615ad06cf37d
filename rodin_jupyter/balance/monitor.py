"""The one source of truth for the balance in a kernel.

Every face (the magic, the panels, the guard) reads through the process-wide
:class:`BalanceMonitor`: it keeps the last known balance, serves cached reads,
coalesces concurrent refreshes into one request, keeps the ledger of guarded requests, and tells
observers when anything changes. It knows nothing of IPython or widgets.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable

from rodin_jupyter.balance.flight import WAIT_LIMIT, Flight
from rodin_jupyter.balance.observers import Observers
from rodin_jupyter.balance.shared import SharedReadings
from rodin_jupyter.balance.snapshot import BalanceState, LedgerEntry, Snapshot
from rodin_jupyter.errors import RodinError
from rodin_jupyter.http.client import RodinClient
from rodin_jupyter.http.reading import BalanceReading

log = logging.getLogger("rodin_jupyter.balance.monitor")

POLL = 0.25
SHARED_WAIT = 3.0
"""Longest wait for another kernel's refresh of the same account before making our own."""


Observer = Callable[[Snapshot], None]
ClientFactory = Callable[[], RodinClient]


class BalanceMonitor:
    """Last known balance, cache, spend ledger and observers, shared by every face."""

    def __init__(self, client_factory: ClientFactory = RodinClient) -> None:
        self._client_factory = client_factory
        self._client: RodinClient | None = None
        self._identity: Hashable = None
        self._lock = threading.RLock()
        self._inflight: Flight | None = None
        self._last: BalanceReading | None = None
        self._error: str | None = None
        self._readings = 0
        self._ledger: list[LedgerEntry] = []
        self._observers: Observers[Snapshot] = Observers()
        self._epoch = 0  # bumped by configure(): a reading from the old client no longer applies
        self.requests_sent = 0
        self._shared = SharedReadings()  # readings shared with other kernels (balance/shared.py)
        self.adopted: BalanceReading | None = None
        """The last reading taken from another kernel rather than from the service."""

    # -- configuration -----------------------------------------------------------------

    def configure(self, client_factory: ClientFactory, identity: Hashable = None) -> None:
        """Use a new client (new key or base URL): the old state no longer applies.

        ``identity`` names the account and settings behind the factory; configuring again
        with the same identity (``%unload_ext`` then ``%load_ext``) keeps the balance, the
        spend and the ledger.
        """
        with self._lock:
            if identity is not None and identity == self._identity:
                self._client_factory = client_factory
                return
            self._identity = identity
            old, self._client = self._client, None
            self._client_factory = client_factory
            self._epoch += 1
            self._last, self._error, self._readings = None, None, 0
            self._ledger.clear()
            self._shared = SharedReadings()
        if old is not None:
            old.close()
        self._notify()

    def client(self) -> RodinClient:
        """The shared client, created on first use (so a missing key fails late and clearly).

        Built outside the lock: finding the key may take time (Colab's Secrets panel), and
        every snapshot, panel and guard decision needs the lock meanwhile.
        """
        with self._lock:
            if self._client is not None:
                return self._client
            factory, epoch = self._client_factory, self._epoch
        made = factory()
        with self._lock:
            if self._client is None and self._epoch == epoch:
                self._client = made
                return made
            current = self._client
        if current is None:  # reconfigured meanwhile: this client is for the old settings
            made.close()
            return self.client()
        if current is not made:
            made.close()  # another thread built one first
        return current

    def reset(self) -> None:
        """Back to a new kernel's monitor: default client, no readings, ledger or observers."""
        self.configure(RodinClient)
        with self._lock:
            self._identity, self.requests_sent = None, 0
            self.adopted = None
        self._observers.clear()
        self.close()

    def close(self) -> None:
        """Drop the client and its connections (the state stays)."""
        with self._lock:
            old, self._client = self._client, None
        if old is not None:
            old.close()

    # -- reading -----------------------------------------------------------------------

    def refresh(self) -> BalanceReading:
        """Ask the service now. Concurrent callers share one request and its outcome.

        Every wait is bounded, and an interrupt at any point (KeyboardInterrupt in the
        leader) leaves the monitor usable: the flight is landed on the way out, or else
        taken over by the next caller in this thread, or given up by waiters at its limit.
        """
        result: BalanceReading | RodinError = RodinError(
            "The balance check was interrupted; try again.")
        client: RodinClient | None = None
        try:
            flight = self._board()
            if flight is not None:
                return self._unwrap(self._wait(flight))
            self._notify()  # observers see "checking"
            client = self.client()
            self._set_limit(2 * float(getattr(client, "deadline", 0)) + 5.0)
            result = client.check_balance()
        except RodinError as exc:
            result = exc
        except Exception as exc:  # never leave waiters hanging on an unexpected bug
            log.debug("unexpected error during balance check: %s", type(exc).__name__)
            result = RodinError(f"Balance check failed unexpectedly ({type(exc).__name__}).")
        finally:
            self._finish(result)
        account = getattr(client, "account", None)  # a stand-in client may have none
        if isinstance(account, tuple) and isinstance(result, BalanceReading):
            self._shared.publish(account, result)  # for the other kernels
        self._notify()
        return self._unwrap(result)

    def _board(self) -> Flight | None:
        """Join the flight in progress (returned), or lead a new one (None)."""
        with self._lock:
            flight = self._inflight
            if (flight is not None and not flight.done.is_set()
                    and flight.epoch == self._epoch and not flight.abandoned()):
                return flight
            if flight is not None:  # whoever still waits on it is released
                flight.land(RodinError("The balance check was interrupted; try again."))
            self._inflight = Flight(self._epoch)
            self.requests_sent += 1
            return None

    def _set_limit(self, seconds: float) -> None:
        flight = self._inflight
        if flight is not None and flight.leader is threading.current_thread():
            flight.limit = max(WAIT_LIMIT, seconds)

    def _wait(self, flight: Flight) -> BalanceReading | RodinError | None:
        """The outcome of another caller's flight, waiting no longer than its limit."""
        # The outcome travels with the flight: by the time a waiter wakes up, another
        # refresh may already have started.
        while not flight.done.wait(POLL):
            if flight.abandoned():
                return RodinError("The balance check in progress did not finish; try again.")
        return flight.result

    def _finish(self, result: BalanceReading | RodinError) -> None:
        """Land the flight this thread leads, if any; its reading counts only if it is for
        the current configuration and account."""
        flight = self._inflight
        if flight is None or flight.leader is not threading.current_thread():
            return  # a waiter, or interrupted before leading: nothing of ours in flight
        try:
            with self._lock:
                current = flight.epoch == self._epoch and self._inflight is flight
                if current and isinstance(result, BalanceReading):
                    current = self._for_current_account(result)
                if current:  # configure() ran meanwhile: the old state is gone
                    if isinstance(result, BalanceReading):
                        self._apply(result)
                    else:
                        self._error = str(result)
                if self._inflight is flight:
                    self._inflight = None
        finally:
            flight.land(result)

    def _for_current_account(self, reading: BalanceReading) -> bool:
        client = self._client
        return reading.account is None or client is None or reading.account == client.account

    @staticmethod
    def _unwrap(result: BalanceReading | RodinError | None) -> BalanceReading:
        if isinstance(result, BalanceReading):
            return result
        if isinstance(result, RodinError):
            raise result
        raise RodinError("Balance check failed.")

    def read(self, max_age: float | None = None) -> BalanceReading:
        """The last reading if younger than ``max_age`` seconds, else a fresh one.

        A reading another kernel took of the same account counts too, with its own age.
        """
        if max_age is not None:
            with self._lock:
                last = self._last
                if last is not None and self._error is None and last.age() <= max_age:
                    return last
                busy = self._inflight is not None and not self._inflight.done.is_set()
            # -- shared readings (balance/shared.py) ------------------------------------
            adopted = self._adopt_shared(max_age)
            if adopted is not None or busy:  # busy: join this process's flight below
                return adopted or self.refresh()
            with self._shared.one_at_a_time(SHARED_WAIT):  # one kernel asks, the rest adopt
                return self._adopt_shared(max_age) or self.refresh()
            # -- end of shared readings --------------------------------------------------
        return self.refresh()

    def _adopt_shared(self, max_age: float) -> BalanceReading | None:
        """Take another kernel's reading of this account if it is young enough."""
        with self._lock:
            epoch = self._epoch
        try:
            account = getattr(self.client(), "account", None)
        except RodinError:
            return None  # no key: refresh() says so
        found = self._shared.find(account, max_age) if isinstance(account, tuple) else None
        if found is None:
            return None
        with self._lock:
            if epoch != self._epoch or not self._for_current_account(found):
                return None
            if self._last is None or found.monotonic > self._last.monotonic:
                self._apply(found)
                self.adopted = found
            elif self._last.age() > max_age:
                return None
            found = self._last
        self._notify()
        return found

    def record(self, reading: BalanceReading) -> None:
        """Take a reading obtained elsewhere (e.g. a generation answer) into the state."""
        with self._lock:
            if not self._for_current_account(reading):
                return
            self._apply(reading)
        self._notify()

    def _apply(self, reading: BalanceReading) -> None:
        self._last = reading
        self._error = None
        self._readings += 1

    @property
    def last(self) -> BalanceReading | None:
        """The last successful reading, however old."""
        with self._lock:
            return self._last

    # -- ledger ------------------------------------------------------------------------

    def add_ledger_entry(self, entry: LedgerEntry) -> None:
        """Record a guarded cell that ran."""
        with self._lock:
            self._ledger.append(entry)
        self._notify()

    # -- observers ---------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The current state as an immutable value."""
        with self._lock:
            last = self._last
            return Snapshot(
                balance=None if last is None else last.balance,
                checked_at=None if last is None else last.checked_at,
                checked_monotonic=None if last is None else last.monotonic,
                error=self._error,
                checking=self._inflight is not None,
                readings=self._readings,
                ledger=tuple(self._ledger),
            )

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(snapshot)`` on every change; returns the function that unsubscribes."""
        return self._observers.add(observer)

    @property
    def observer_count(self) -> int:
        """How many observers are subscribed (tests check panels let go)."""
        return len(self._observers)

    def _notify(self) -> None:
        self._observers.notify(self.snapshot())


_monitor: BalanceMonitor | None = None
_monitor_lock = threading.Lock()


def _after_fork_in_child() -> None:
    """A forked child starts with a fresh monitor: the parent's flight, locks and pooled
    connections are not the child's. The configuration (client factory) carries over."""
    global _monitor, _monitor_lock
    old, _monitor, _monitor_lock = _monitor, None, threading.Lock()
    if old is not None:
        _monitor = BalanceMonitor(old._client_factory)
        _monitor._identity = old._identity


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def get_monitor() -> BalanceMonitor:
    """The process-wide monitor every face shares."""
    global _monitor
    with _monitor_lock:
        if _monitor is None:
            _monitor = BalanceMonitor()
        return _monitor


__all__: list[str] = ["BalanceMonitor", "BalanceState", "LedgerEntry", "Snapshot", "get_monitor"]
