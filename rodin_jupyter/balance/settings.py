"""The one settings object of the core; ``%config RodinMagics`` / ``RodinGuard`` write it.

A plain object rather than traitlets so the panel and the guard can read it without the
extension being loaded (``display(BalancePanel())`` in a notebook that never ran
``%load_ext``). Three sections, each name with one meaning: ``settings.client`` (where and
how long to ask), ``settings.balance`` (how a reading is shown and reused) and
``settings.guard`` (what the send-time guard lets out). The traitlets classes take their
defaults from these dataclasses, so each default is written once, here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

TEST_MIN_INTERVAL_VARIABLE = "RODIN_JUPYTER_TEST_ONLY_MIN_REFRESH_INTERVAL"
"""For tests and benchmarks only: lowers the refresh floor (never below 1 s, the panel's tick)."""


def _min_refresh_interval() -> float:
    try:
        lowered = float(os.environ.get(TEST_MIN_INTERVAL_VARIABLE, ""))
    except ValueError:
        return 10.0
    return min(10.0, max(1.0, lowered)) if lowered == lowered else 10.0


MIN_REFRESH_INTERVAL = _min_refresh_interval()
"""10 s for users: auto-refresh must not hammer a service that throttles."""
READ_TIMEOUT_LIMIT = 10.0
"""The API contract's ceiling on one read wait, in seconds."""
BALANCE_SCALES = (Decimal(1), Decimal(10))
"""The units a ``check_balance`` reading can be in: credits, or tenths of a credit (no
source suggests another, and any other factor would only print odd fractions)."""


@dataclass
class ClientSettings:
    """Where the balance is asked for and how long each step may take."""

    base_url: str = ""
    """``RodinMagics.base_url`` as configured (empty: ``RODIN_API_BASE`` / the service)."""

    connect_timeout: float = 3.05
    """Seconds to wait for a connection."""

    read_timeout: float = READ_TIMEOUT_LIMIT
    """Seconds to wait for an answer (at most ``READ_TIMEOUT_LIMIT``)."""

    deadline: float = 25.0
    """Seconds a balance check may take in all, retries included."""


@dataclass
class BalanceSettings:
    """How a reading is classified, refreshed and reused."""

    warn_below: Decimal = Decimal(5)
    """Below this the panel shows 'low'."""

    too_low_below: Decimal | None = None
    """Below this the panel shows 'too low'. None: the cheapest price in the guard's price
    table (a balance that cannot pay for any billable request)."""

    refresh_interval: float = 60.0
    """Seconds between automatic panel refreshes (at least ``MIN_REFRESH_INTERVAL``)."""

    cached_max_age: float = 30.0
    """How old a reading ``%rodin_balance --cached`` (and a new panel) may reuse, in s."""

    scale: Decimal = Decimal(1)
    """How many ``check_balance`` units make one credit: 1 (credits, as documented) or 10 if
    the service reports tenths (a 0.5-credit generation then drops the reading by 5)."""


@dataclass
class GuardSettings:
    """The send-time guard's rules (``%config RodinGuard``); the budget lives in its account."""

    reserve: Decimal = Decimal(0)
    """Credits the guard always leaves on the balance."""

    on_error: str = "block"
    """When the balance cannot be read: 'block' the billable request, or 'allow' it."""

    reading_max_age: float = 60.0
    """Seconds one of the guard's own readings, less this kernel's spend since, may prove
    a request affordable; older, or not enough, and the balance is read fresh."""

    prices: dict[str, Any] = field(default_factory=dict)
    """Price overrides merged over the defaults and ``RODIN_PRICES_FILE``."""


@dataclass
class Settings:
    """Shared settings, with the defaults a new user gets."""

    client: ClientSettings = field(default_factory=ClientSettings)
    balance: BalanceSettings = field(default_factory=BalanceSettings)
    guard: GuardSettings = field(default_factory=GuardSettings)


settings = Settings()


def too_low_threshold() -> Decimal:
    """The 'too low' line: the configured one, else the cheapest price the guard knows."""
    if settings.balance.too_low_below is not None:
        return settings.balance.too_low_below
    from rodin_jupyter.errors import PricingError
    from rodin_jupyter.guard.price_table import load_prices

    try:
        return load_prices(settings.guard.prices).cheapest()
    except PricingError:  # a broken prices file: the guard says so; show the documented floor
        return Decimal("0.5")


def balance_in_credits(reading: Decimal, scale: Decimal | None = None) -> Decimal:
    """The one place a ``check_balance`` number becomes credits (``settings.balance.scale``).

    A scale other than 1 or 10 is refused here too: dividing by it would invent money.
    """
    factor = check_balance_scale(settings.balance.scale if scale is None else scale)
    return reading if factor == 1 else reading / factor


def check_balance_scale(value: object) -> Decimal:
    """``value`` as a scale (1 or 10), or a ValueError that says what to set instead."""
    try:
        factor = Decimal(str(value)) if not isinstance(value, (bool, Decimal)) else value
    except (InvalidOperation, ValueError, TypeError):
        factor = None
    if not isinstance(factor, Decimal) or not factor.is_finite() or factor not in BALANCE_SCALES:
        raise ValueError(f"balance_scale must be 1 (credits) or 10 (tenths of a credit), "
                         f"not {str(value)[:40]!r}.")
    return next(scale for scale in BALANCE_SCALES if scale == factor)
