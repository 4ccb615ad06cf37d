"""Every word and every piece of HTML about a balance: they all paint one ``BalanceView``.

The magic's card, the panel (live, and its saved/static fallback for nbconvert and
viewers) and the ledger come from here, so every face says the same thing the same way.

Colours and fonts are JupyterLab's CSS variables, with the Light theme's values as
fallbacks so static HTML still looks right. Text is drawn only in the theme's content
colours or in near-black on the light state tints (the same in Light and Dark), which keeps
every text at 4.5:1 or better; the state colours go on borders and outlines, never on text,
and each state also has its own word, icon and outline style.
"""

from __future__ import annotations

import html
from datetime import datetime
from decimal import Decimal
from typing import Any

from rodin_jupyter.balance.display import credits_json, exact_credits
from rodin_jupyter.balance.monitor import BalanceState, LedgerEntry, Snapshot
from rodin_jupyter.balance.view import BalanceView, balance_view, reading_snapshot

FG0 = "var(--jp-content-font-color0, #000)"
FG1 = "var(--jp-content-font-color1, rgba(0, 0, 0, 0.87))"
FG2 = "var(--jp-content-font-color2, rgba(0, 0, 0, 0.54))"
FONT = ("var(--jp-content-font-family, system-ui, -apple-system, 'Segoe UI', Helvetica, "
        "Arial, sans-serif)")
ON_TINT = "#000"  # the *-color3 tints are light in both themes
NEUTRAL_BG = "var(--jp-layout-color2, #eee)"
ERROR_BG = "var(--jp-rendermime-error-background, #fdd)"


def _var(name: str, fallback: str) -> str:
    return f"var(--jp-{name}, {fallback})"


# state: (icon, accent for the panel's edge, edge style, pill background, pill text,
#         pill outline)
STYLES: dict[BalanceState, tuple[str, str, str, str, str, str]] = {
    BalanceState.OK: ("✓", _var("success-color1", "#388e3c"), "solid",
                      _var("success-color3", "#c8e6c9"), ON_TINT,
                      "1px solid " + _var("success-color0", "#1b5e20")),
    BalanceState.LOW: ("!", _var("warn-color1", "#f57c00"), "solid",
                       _var("warn-color3", "#ffe0b2"), ON_TINT,
                       "1px solid " + _var("warn-color0", "#e65100")),
    BalanceState.TOO_LOW: ("✕", _var("error-color1", "#d32f2f"), "solid",
                           _var("error-color3", "#ffcdd2"), ON_TINT,
                           "2px solid " + _var("error-color0", "#b71c1c")),
    BalanceState.ERROR: ("⚠", _var("error-color1", "#d32f2f"), "dashed",
                         _var("error-color3", "#ffcdd2"), ON_TINT,
                         "2px dashed " + _var("error-color0", "#b71c1c")),
    BalanceState.CHECKING: ("↻", _var("border-color1", "#bdbdbd"), "dotted",
                            NEUTRAL_BG, FG1, "1px dotted " + FG2),
    BalanceState.UNKNOWN: ("?", _var("border-color1", "#bdbdbd"), "dashed",
                           NEUTRAL_BG, FG1, "1px dashed " + FG2),
}

ROW = "display:flex;flex-wrap:wrap;align-items:center;gap:2px 10px;min-width:0;"


def view_text(view: BalanceView, *, live: bool = False) -> str:
    """One line: 'Rodin balance: 12.5 credits (ok, checked 2026-12-01 20:31:05 UTC)'."""
    head = ("Rodin balance: unknown" if view.balance is None
            else f"Rodin balance: {view.amount} credits")
    parts = [view.word]
    if view.balance is not None:
        parts.append(view.age_text(live))
    if view.stale:
        parts.append("stale")
    if view.spent_here:
        parts.append(f"spent here {view.spent_text}")
    line = f"{head} ({', '.join(parts)})"
    if view.error:
        line += f" -- {view.error}"
    return line


def _age(view: BalanceView, live: bool) -> str:
    """The age as HTML; the live part ("12 s ago, at") is its own span, which the panel hides
    once no kernel is behind it (a re-opened notebook keeps only the clock time)."""
    if not live or view.balance is None or view.clock is None:
        return html.escape(view.age_text(live))
    return (f'checked <span class="rodin-age-live">{html.escape(view.ago)}, at </span>'
            f"{html.escape(view.short_clock or '')}")


def view_html(view: BalanceView, *, live: bool = False) -> str:
    """The balance as a small self-contained HTML block (no script, no <style>).

    ``live`` is for the widget ("checked 12 s ago"); saved and static outputs carry the
    clock time of the reading instead. Rows wrap and long words break, so it fits any
    width down to 320 px.
    """
    icon, accent, edge, pill_bg, pill_fg, outline = STYLES[view.state]
    slug = view.state.name.lower().replace("_", "-")
    esc = html.escape
    pill = (f'<span class="rodin-pill" style="display:inline-flex;align-items:center;gap:4px;'
            f"padding:0 8px;border-radius:10px;border:{outline};background:{pill_bg};"
            f'color:{pill_fg};font-size:0.85em;line-height:1.6;white-space:nowrap">'
            f'<span aria-hidden="true">{icon}</span>'
            f'<span class="rodin-state">{esc(view.word)}</span></span>')
    dim = view.checking or view.stale
    title = (' title="last known balance; the latest check failed"' if view.stale else
             ' title="a new reading is on its way"' if view.checking else "")
    if view.balance is None:
        number = f'<span class="rodin-number" style="font-size:0.6em">{esc(view.amount)}</span>'
    else:
        number = (f'<span class="rodin-number">{esc(view.amount)}</span> '
                  '<span style="font-size:0.5em;font-weight:400">credits</span>')
    amount = (f'<div class="rodin-amount{" rodin-dim" if dim else ""}" style="font-size:2em;'
              f'font-weight:{400 if dim else 600};line-height:1.25;'
              f'color:{FG2 if dim else FG0}"{title}>{number}</div>')
    stale = ('<span class="rodin-stale" style="font-weight:600;color:' + FG1 + '">'
             "⚠ stale</span>") if view.stale else ""
    details = (f'<div class="rodin-details" style="{ROW}font-size:0.9em;color:{FG2}">'
               f'<span class="rodin-age">{_age(view, live)}</span>{stale}'
               f'<span class="rodin-spent">spent here: {esc(view.spent_text)}</span></div>')
    error = ""
    if view.error:
        error = (f'<div class="rodin-error" role="alert" style="margin-top:4px;'
                 f"padding:2px 8px;border-left:3px solid {accent};background:{ERROR_BG};"
                 f'color:{FG1};white-space:normal;overflow-wrap:anywhere">'
                 f'<span aria-hidden="true">⚠ </span>{esc(view.error)}</div>')
    return (
        f'<div class="rodin-balance rodin-is-{slug}" data-state="{slug}" '
        "style=\"box-sizing:border-box;max-width:100%;min-width:0;padding:4px 12px;"
        f"border-left:4px {edge} {accent};font-family:{FONT};color:{FG1};line-height:1.4;"
        f'overflow-wrap:anywhere">'
        f'<div class="rodin-head" style="{ROW}"><span class="rodin-title" '
        f'style="color:{FG2}">Rodin balance</span>{pill}</div>'
        f"{amount}{details}{error}</div>"
    )


class Balance(Decimal):
    """The magic's return value: a ``Decimal`` you can compare and add, that shows itself.

    ``b = %rodin_balance`` then ``b >= 2`` works; the notebook shows a card, a terminal
    one line. Both carry the clock time of the reading (a saved notebook stays true).
    """

    checked_at: datetime | None
    cached: bool
    ledger: tuple[LedgerEntry, ...]

    def __new__(cls, value: Decimal, checked_at: datetime | None = None,
                cached: bool = False, ledger: tuple[LedgerEntry, ...] = ()) -> Balance:
        self = super().__new__(cls, value)
        self.checked_at = checked_at
        self.cached = cached
        self.ledger = tuple(ledger)
        return self

    @property
    def value(self) -> Decimal:
        """The balance as a plain ``Decimal``."""
        return Decimal(self)

    def view(self) -> BalanceView:
        """What the card and the line show."""
        return balance_view(reading_snapshot(self.value, self.checked_at,
                                             Snapshot(ledger=self.ledger)))

    def __repr__(self) -> str:
        return view_text(self.view())

    def _repr_html_(self) -> str:
        return view_html(self.view())

    def to_json(self) -> dict[str, Any]:
        """Machine-readable form: the balance as a JSON number, the time in ISO 8601."""
        return {
            "balance": credits_json(self.value),
            "balance_exact": exact_credits(self.value),
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "cached": self.cached,
        }


__all__ = ["Balance", "view_html", "view_text"]
