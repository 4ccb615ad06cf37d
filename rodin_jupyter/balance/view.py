"""One ``BalanceView``: what every face shows about the balance, worked out in one place.

The text line, the HTML card and the widget panel all paint a ``BalanceView`` (as
``tqdm`` formats one meter for its widget and its ``repr``): the state, the words, the age
and what was spent here are decided here and nowhere else, from a monitor ``Snapshot``
and the settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from rodin_jupyter.balance.display import describe_age, format_credits
from rodin_jupyter.balance.monitor import BalanceState, Snapshot
from rodin_jupyter.balance.settings import settings, too_low_threshold

MAX_ERROR_CHARS = 500
"""An error line longer than this (service text is untrusted) is cut with '…'."""

ZERO = Decimal(0)


def one_line(text: str) -> str:
    """The first non-empty line of ``text``, trimmed to a readable length."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else "Balance check failed."
    if len(line) > MAX_ERROR_CHARS:
        line = line[: MAX_ERROR_CHARS - 1] + "…"
    return line


def spent_here(snapshot: Snapshot) -> Decimal:
    """Credits this kernel's own billable requests cost.

    The sum of the ledger's entries, never "any drop of the balance": a balance that fell
    because another notebook or the web app spent credits is not spent *here*. The one
    place to switch when the send-time ledger (``balance/ledger.py``) lands.
    """
    return sum((entry.spent or ZERO for entry in snapshot.ledger), ZERO)


def clock_time(checked_at: datetime | None) -> str | None:
    """The wall-clock time of a reading in the kernel's zone: '2026-12-01 20:31:05 UTC'."""
    if checked_at is None:
        return None
    if checked_at.tzinfo is None:
        checked_at = checked_at.replace(tzinfo=timezone.utc)
    local = checked_at.astimezone()
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or ''}".strip()


@dataclass(frozen=True)
class BalanceView:
    """Everything a face paints about the balance; no face works any of it out again."""

    state: BalanceState
    balance: Decimal | None
    amount: str
    """'12.5', or 'unknown' (a word, not a dash that reads like a redaction)."""
    age_seconds: float | None
    clock: str | None
    """Wall-clock time of the last good reading, for saved and static outputs."""
    stale: bool
    """A balance is shown but the latest check failed: it may be out of date."""
    checking: bool
    spent_here: Decimal
    error: str | None
    """The latest check's one-line error; hidden while a new check runs."""

    @property
    def word(self) -> str:
        """The state in one word or two: 'ok', 'low', 'too low', 'error', ..."""
        return self.state.value

    @property
    def spent_text(self) -> str:
        return format_credits(self.spent_here)

    @property
    def ago(self) -> str:
        """'12 s ago': for the live panel only, it is false as soon as it is saved."""
        return describe_age(self.age_seconds)

    @property
    def short_clock(self) -> str | None:
        """The clock time without the date: '20:31:05 UTC'."""
        return None if self.clock is None else self.clock.split(" ", 1)[-1]

    def age_text(self, live: bool) -> str:
        """'checked 12 s ago, at 20:31:05 UTC' live; 'checked 2026-12-01 20:31:05 UTC' saved.

        A saved or static output must not say "just now" for ever, so it carries the clock
        time alone; the live panel adds how long ago that was.
        """
        if self.balance is None or self.clock is None:
            return "no balance read yet" if self.error else "not checked yet"
        if not live:
            return f"checked {self.clock}"
        return f"checked {self.ago}, at {self.short_clock}"


def balance_view(snapshot: Snapshot, *, busy: bool = False) -> BalanceView:
    """The view of ``snapshot`` under the current settings.

    ``busy`` says a refresh was asked for and has not finished (the panel's scheduler may
    know before the monitor does): the view then shows "checking" and hides the old error.
    """
    checking = busy or snapshot.checking
    error = None if checking or snapshot.error is None else one_line(snapshot.error)
    if checking:
        state = BalanceState.CHECKING
    elif error is not None:
        state = BalanceState.ERROR
    else:
        state = snapshot.state(settings.balance.warn_below, too_low_threshold())
    balance = snapshot.balance
    return BalanceView(
        state=state,
        balance=balance,
        amount="unknown" if balance is None else format_credits(balance),
        age_seconds=snapshot.age(),
        clock=clock_time(snapshot.checked_at),
        stale=balance is not None and snapshot.error is not None,
        checking=checking,
        spent_here=spent_here(snapshot),
        error=error,
    )


def reading_snapshot(balance: Decimal, checked_at: datetime | None,
                     base: Snapshot | None = None) -> Snapshot:
    """A snapshot of one reading (the magic's value), with ``base``'s ledger if given."""
    checked = None
    if checked_at is not None:
        stamp = checked_at if checked_at.tzinfo else checked_at.replace(tzinfo=timezone.utc)
        age = (datetime.now(timezone.utc) - stamp).total_seconds()
        checked = time.monotonic() - max(0.0, age)
    ledger = base.ledger if base is not None else ()
    return Snapshot(balance=balance, checked_at=checked_at, checked_monotonic=checked,
                    ledger=ledger)


__all__ = ["BalanceView", "balance_view", "clock_time", "one_line", "reading_snapshot",
           "spent_here"]
