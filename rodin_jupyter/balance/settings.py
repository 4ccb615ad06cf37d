"""Thresholds and timings every face reads; ``%config RodinMagics`` writes them.

A plain object rather than traitlets so the panel and the guard can read it without the
extension being loaded (``display(BalancePanel())`` in a notebook that never ran
``%load_ext``).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

MIN_REFRESH_INTERVAL = 10.0


@dataclass
class Settings:
    """Shared settings, with the defaults a new user gets."""

    warn_below: Decimal = Decimal(5)
    """Below this the panel shows 'low'."""

    min_balance: Decimal = Decimal("0.5")
    """Below this the panel shows 'too low'; the guard's minimum when a cost is unclear."""

    refresh_interval: float = 60.0
    """Seconds between automatic panel refreshes (at least ``MIN_REFRESH_INTERVAL``)."""

    cache_ttl: float = 30.0
    """How old a reading ``%rodin_balance --cached`` may reuse, in seconds."""

    balance_scale: Decimal = Decimal(1)
    """How many ``check_balance`` units make one credit: 1 (credits, as documented) or 10 if
    the service reports tenths (a 0.5-credit generation then drops the reading by 5)."""


settings = Settings()


def balance_in_credits(reading: Decimal, scale: Decimal | None = None) -> Decimal:
    """The one place a ``check_balance`` number becomes credits (``settings.balance_scale``).

    A non-positive or non-finite scale is refused here too: dividing by it would invent money.
    """
    factor = settings.balance_scale if scale is None else scale
    if not factor.is_finite() or factor <= 0:
        raise ValueError(f"balance_scale must be a positive number, not {factor}.")
    return reading if factor == 1 else reading / factor

