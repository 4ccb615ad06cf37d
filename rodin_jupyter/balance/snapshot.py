"""What the monitor knows, as immutable values any thread may hold."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

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
        """Classify against the warning threshold and the 'too low' line (``minimum``)."""
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
