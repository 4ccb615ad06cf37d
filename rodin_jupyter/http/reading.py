"""A balance reading: the value the client hands back and the monitor, panels and shared
readings pass around (kept apart from the client so they need not import the HTTP code)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

__all__ = ["BalanceReading"]


@dataclass(frozen=True)
class BalanceReading:
    """A balance and when it was read (wall clock for people, monotonic for ages)."""

    balance: Decimal
    checked_at: datetime
    monotonic: float = field(default_factory=time.monotonic, compare=False)
    account: tuple[str, str] | None = field(default=None, compare=False)
    """(base URL, key fingerprint) the reading was taken with; None when unknown."""

    def age(self) -> float:
        """Seconds since the reading was taken."""
        return max(0.0, time.monotonic() - self.monotonic)
