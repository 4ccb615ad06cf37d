"""Text and HTML renderings of the balance: what a notebook shows without widgets.

The magic's output, the panel's fallback (terminal, nbconvert, notebook viewers) and
the ledger all come from here, so every face says the same thing the same way.
"""

from __future__ import annotations

import html
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from rodin_jupyter.balance.monitor import (
    BalanceState,
    LedgerEntry,
    Snapshot,
    describe_age,
    format_credits,
)
from rodin_jupyter.balance.settings import settings

STATE_COLOURS = {
    BalanceState.OK: "#1a7f37",
    BalanceState.LOW: "#9a6700",
    BalanceState.TOO_LOW: "#cf222e",
    BalanceState.ERROR: "#cf222e",
    BalanceState.CHECKING: "#57606a",
    BalanceState.UNKNOWN: "#57606a",
}


def snapshot_state(snapshot: Snapshot) -> BalanceState:
    """The state under the current thresholds."""
    return snapshot.state(settings.warn_below, settings.min_balance)


def snapshot_text(snapshot: Snapshot) -> str:
    """One line: 'Rodin balance: 12.5 credits (ok, checked 3 s ago; spent 1.5 this session)'."""
    state = snapshot_state(snapshot)
    if snapshot.balance is None:
        head = "Rodin balance: unknown"
    else:
        head = f"Rodin balance: {format_credits(snapshot.balance)} credits"
    parts = [state.value]
    if snapshot.balance is not None:
        parts.append(f"checked {describe_age(snapshot.age())}")
        if snapshot.stale:
            parts.append("stale")
    if snapshot.spent:
        parts.append(f"spent {format_credits(snapshot.spent)} this session")
    line = f"{head} ({', '.join(parts)})"
    if snapshot.error:
        line += f" -- {snapshot.error}"
    return line


def snapshot_html(snapshot: Snapshot) -> str:
    """A small self-contained HTML card (no scripts) for frontends without widgets."""
    state = snapshot_state(snapshot)
    colour = STATE_COLOURS[state]
    amount = html.escape(format_credits(snapshot.balance))
    details = [f"checked {describe_age(snapshot.age())}"] if snapshot.balance is not None else []
    if snapshot.stale:
        details.append("stale")
    details.append(f"spent this session: {format_credits(snapshot.spent)}")
    error = (f'<div class="rodin-error" style="color:{STATE_COLOURS[BalanceState.ERROR]}">'
             f"{html.escape(snapshot.error)}</div>" if snapshot.error else "")
    return (
        '<div class="rodin-balance" style="font-family:sans-serif;'
        f'border-left:4px solid {colour};padding:4px 10px">'
        '<div style="font-size:0.85em;color:#57606a">Rodin balance</div>'
        f'<div style="font-size:1.6em;font-weight:600">{amount} '
        '<span style="font-size:0.6em;font-weight:400">credits</span> '
        f'<span class="rodin-state" style="font-size:0.6em;color:{colour}">'
        f"{html.escape(state.value)}</span></div>"
        f'<div style="font-size:0.85em;color:#57606a">{html.escape(" · ".join(details))}</div>'
        f"{error}</div>"
    )


class Balance(Decimal):
    """The magic's return value: a ``Decimal`` you can compare and add, that shows itself.

    ``b = %rodin_balance`` then ``b >= 2`` works; the notebook shows a card, a terminal
    one line.
    """

    checked_at: datetime | None
    cached: bool

    def __new__(cls, value: Decimal, checked_at: datetime | None = None,
                cached: bool = False) -> Balance:
        self = super().__new__(cls, value)
        self.checked_at = checked_at
        self.cached = cached
        return self

    @property
    def value(self) -> Decimal:
        """The balance as a plain ``Decimal``."""
        return Decimal(self)

    def _snapshot(self) -> Snapshot:
        from rodin_jupyter.balance.monitor import get_monitor

        checked = None
        if self.checked_at is not None:
            age = (datetime.now(timezone.utc) - self.checked_at).total_seconds()
            checked = time.monotonic() - max(0.0, age)
        return Snapshot(balance=self.value, checked_at=self.checked_at,
                        checked_monotonic=checked, spent=get_monitor().snapshot().spent)

    def __repr__(self) -> str:
        return snapshot_text(self._snapshot())

    def _repr_html_(self) -> str:
        return snapshot_html(self._snapshot())

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form: the balance as a JSON number, the time in ISO 8601."""
        return {
            "balance": float(self) if self != self.to_integral_value() else int(self),
            "balance_exact": format_credits(self.value),
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "cached": self.cached,
        }


class LedgerView:
    """The spend ledger of guarded cells, as a table (HTML) or aligned text."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.entries: tuple[LedgerEntry, ...] = snapshot.ledger
        self.spent = snapshot.spent

    @property
    def total(self) -> Decimal:
        """Credits spent by the guarded cells listed."""
        return sum((e.spent or Decimal(0) for e in self.entries), Decimal(0))

    def _rows(self) -> list[tuple[str, str, str, str, str]]:
        return [(e.at.strftime("%H:%M:%S"), e.label, format_credits(e.before),
                 format_credits(e.after), format_credits(e.spent)) for e in self.entries]

    def __repr__(self) -> str:
        if not self.entries:
            return (f"No guarded cells have run yet. Spent this session: "
                    f"{format_credits(self.spent)} credits.")
        lines = [f"{'time':8}  {'cell':36}  {'before':>8}  {'after':>8}  {'spent':>6}"]
        lines += [f"{t:8}  {c[:36]:36}  {b:>8}  {a:>8}  {s:>6}" for t, c, b, a, s in self._rows()]
        lines.append(f"Guarded cells spent {format_credits(self.total)} credits; "
                     f"session total {format_credits(self.spent)}.")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cells = "".join(
            "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>"
            for row in self._rows()
        )
        return (
            '<table class="rodin-ledger"><thead><tr><th>time</th><th>cell</th>'
            "<th>before</th><th>after</th><th>spent</th></tr></thead>"
            f"<tbody>{cells}</tbody></table>"
            f"<p>Guarded cells spent {format_credits(self.total)} credits; session total "
            f"{format_credits(self.spent)}.</p>"
        )
