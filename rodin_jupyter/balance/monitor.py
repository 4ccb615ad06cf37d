"""The one source of truth for the balance in a kernel.

Every face (the magic, the panels, the guard) reads through the process-wide
:class:`BalanceMonitor`: it keeps the last known balance, serves cached reads,
coalesces concurrent refreshes into one request, adds up what was spent, and tells
observers when anything changes. It knows nothing of IPython or widgets.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from rodin_jupyter.errors import RodinError
from rodin_jupyter.http.client import BalanceReading, RodinClient

log = logging.getLogger("rodin_jupyter.balance.monitor")

ZERO = Decimal(0)


class BalanceState(enum.Enum):
    """What a person should read at a glance."""

    UNKNOWN = "unknown"
    CHECKING = "checking"
    OK = "ok"
    LOW = "low"
    TOO_LOW = "too low"
    ERROR = "error"


@dataclass(frozen=True)
class LedgerEntry:
    """One guarded cell that ran: the balance around it and what it took."""

    label: str
    estimated: Decimal
    before: Decimal
    after: Decimal | None
    at: datetime

    @property
    def spent(self) -> Decimal | None:
        """Credits the cell took (a top-up during the cell counts as zero)."""
        return None if self.after is None else max(ZERO, self.before - self.after)


@dataclass(frozen=True)
class Snapshot:
    """An immutable view of the monitor, safe to hand to any thread."""

    balance: Decimal | None = None
    checked_at: datetime | None = None
    checked_monotonic: float | None = None
    error: str | None = None
    checking: bool = False
    spent: Decimal = ZERO
    readings: int = 0
    ledger: tuple[LedgerEntry, ...] = field(default_factory=tuple)

    @property
    def stale(self) -> bool:
        """A balance is shown but the latest attempt to refresh it failed."""
        return self.balance is not None and self.error is not None

    def age(self) -> float | None:
        """Seconds since the last successful reading."""
        if self.checked_monotonic is None:
            return None
        return max(0.0, time.monotonic() - self.checked_monotonic)

    def state(self, warn_below: Decimal, minimum: Decimal) -> BalanceState:
        """Classify against the warning threshold and the guard's minimum."""
        if self.checking:
            return BalanceState.CHECKING
        if self.error is not None:
            return BalanceState.ERROR
        if self.balance is None:
            return BalanceState.UNKNOWN
        if self.balance < minimum:
            return BalanceState.TOO_LOW
        if self.balance < warn_below:
            return BalanceState.LOW
        return BalanceState.OK


Observer = Callable[[Snapshot], None]
ClientFactory = Callable[[], RodinClient]


class _Flight:
    """One balance request in flight and, once done, its outcome for everyone who waited."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: BalanceReading | RodinError | None = None


class BalanceMonitor:
    """Last known balance, cache, spend ledger and observers, shared by every face."""

    def __init__(self, client_factory: ClientFactory = RodinClient) -> None:
        self._client_factory = client_factory
        self._client: RodinClient | None = None
        self._identity: Hashable = None
        self._lock = threading.RLock()
        self._inflight: _Flight | None = None
        self._last: BalanceReading | None = None
        self._error: str | None = None
        self._spent = ZERO
        self._readings = 0
        self._ledger: list[LedgerEntry] = []
        self._observers: list[Observer] = []
        self._epoch = 0  # bumped by configure(): a reading from the old client no longer applies
        self.requests_sent = 0

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
            self._last, self._error, self._spent, self._readings = None, None, ZERO, 0
            self._ledger.clear()
        if old is not None:
            old.close()
        self._notify()

    def client(self) -> RodinClient:
        """The shared client, created on first use (so a missing key fails late and clearly)."""
        with self._lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def close(self) -> None:
        """Drop the client and its connections (the state stays)."""
        with self._lock:
            old, self._client = self._client, None
        if old is not None:
            old.close()

    # -- reading -----------------------------------------------------------------------

    def refresh(self) -> BalanceReading:
        """Ask the service now. Concurrent callers share one request and its outcome."""
        with self._lock:
            flight = self._inflight
            leader = flight is None
            if leader:
                flight = self._inflight = _Flight()
                self.requests_sent += 1
            epoch = self._epoch
        assert flight is not None
        if not leader:
            # The outcome travels with the flight: by the time a waiter wakes up, another
            # refresh may already have started.
            flight.done.wait()
            return self._unwrap(flight.result)
        # Whatever happens below (even KeyboardInterrupt in the leader), the waiters are
        # released and the next refresh can start: otherwise every later read would hang.
        result: BalanceReading | RodinError = RodinError("The balance check was interrupted.")
        try:
            self._notify()  # observers see "checking"
            result = self.client().check_balance()
        except RodinError as exc:
            result = exc
        except Exception as exc:  # never leave waiters hanging on an unexpected bug
            log.debug("unexpected error during balance check: %s", type(exc).__name__)
            result = RodinError(f"Balance check failed unexpectedly ({type(exc).__name__}).")
        finally:
            with self._lock:
                if epoch == self._epoch:  # configure() ran meanwhile: the old state is gone
                    if isinstance(result, BalanceReading):
                        self._apply(result)
                    else:
                        self._error = str(result)
                flight.result = result
                self._inflight = None
            flight.done.set()
        self._notify()
        return self._unwrap(result)

    @staticmethod
    def _unwrap(result: BalanceReading | RodinError | None) -> BalanceReading:
        if isinstance(result, BalanceReading):
            return result
        if isinstance(result, RodinError):
            raise result
        raise RodinError("Balance check failed.")

    def read(self, max_age: float | None = None) -> BalanceReading:
        """The last reading if younger than ``max_age`` seconds, else a fresh one."""
        if max_age is not None:
            with self._lock:
                last = self._last
                if last is not None and self._error is None and last.age() <= max_age:
                    return last
        return self.refresh()

    def record(self, reading: BalanceReading) -> None:
        """Take a reading obtained elsewhere (e.g. a generation answer) into the state."""
        with self._lock:
            self._apply(reading)
        self._notify()

    def _apply(self, reading: BalanceReading) -> None:
        if self._last is not None and reading.balance < self._last.balance:
            self._spent += self._last.balance - reading.balance
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
                spent=self._spent,
                readings=self._readings,
                ledger=tuple(self._ledger),
            )

    def subscribe(self, observer: Observer) -> Callable[[], None]:
        """Call ``observer(snapshot)`` on every change; returns the function that unsubscribes."""
        with self._lock:
            self._observers.append(observer)

        def unsubscribe() -> None:
            with self._lock:
                if observer in self._observers:
                    self._observers.remove(observer)

        return unsubscribe

    @property
    def observer_count(self) -> int:
        """How many observers are subscribed (tests check panels let go)."""
        with self._lock:
            return len(self._observers)

    def _notify(self) -> None:
        snapshot = self.snapshot()
        with self._lock:
            observers = list(self._observers)
        for observer in observers:
            try:
                observer(snapshot)
            except Exception as exc:  # one broken view must not break the others
                log.debug("balance observer failed: %s", type(exc).__name__)


_monitor: BalanceMonitor | None = None
_monitor_lock = threading.Lock()


def get_monitor() -> BalanceMonitor:
    """The process-wide monitor every face shares."""
    global _monitor
    with _monitor_lock:
        if _monitor is None:
            _monitor = BalanceMonitor()
        return _monitor


def describe_age(seconds: float | None) -> str:
    """'just now', '12 s ago', '3 min ago', '2 h ago' -- for people, not machines."""
    if seconds is None:
        return "never"
    if seconds < 2:
        return "just now"
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    return f"{seconds // 3600:.0f} h ago"


def format_credits(value: Decimal | None) -> str:
    """A balance for people: '12.5', '3', '—' when unknown."""
    if value is None:
        return "—"
    return f"{value.normalize():f}"


__all__: list[str] = [
    "BalanceMonitor", "BalanceState", "LedgerEntry", "Snapshot", "describe_age",
    "format_credits", "get_monitor",
]
