"""The one BalanceView and its text and HTML: pure logic, no widget, no socket."""

from __future__ import annotations

import dataclasses
import re
import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from rodin_jupyter.balance.monitor import LedgerEntry, Snapshot
from rodin_jupyter.balance.settings import settings
from rodin_jupyter.balance.text import view_html, view_text
from rodin_jupyter.balance.view import balance_view, one_line, spent_here
from rodin_jupyter.ipython.cell_errors import one_line_message

CLOCK = re.compile(r"\d\d:\d\d:\d\d")
NOW = datetime(2026, 12, 1, 20, 31, 5, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "balance", dataclasses.replace(settings.balance))


def entry(before: str, after: str) -> LedgerEntry:
    return LedgerEntry("cell 1", Decimal("0.5"), Decimal(before), Decimal(after), NOW)


def snap(balance: str | None = "10", **kwargs: Any) -> Snapshot:
    value = None if balance is None else Decimal(balance)
    checked = NOW if value is not None else None
    mono = time.monotonic() - 12 if value is not None else None
    return Snapshot(balance=value, checked_at=checked, checked_monotonic=mono, **kwargs)


# -- the view: one place decides every word ------------------------------------------------


def test_thresholds_give_the_states(monkeypatch: pytest.MonkeyPatch) -> None:
    settings.balance.warn_below = Decimal(5)
    settings.balance.too_low_below = None  # the cheapest price in the table: 0.5
    assert balance_view(snap(None)).word == "unknown"
    assert balance_view(snap(None)).amount == "unknown"  # a word, not a dash
    for balance, state in (("10", "ok"), ("3", "low"), ("0.2", "too low")):
        assert balance_view(snap(balance)).word == state
    settings.balance.too_low_below = Decimal("0.1")  # %config RodinMagics.min_balance
    assert balance_view(snap("0.2")).word == "low"
    assert balance_view(snap("10", error="down")).word == "error"
    assert balance_view(snap("10", checking=True)).word == "checking"


def test_states_differ_by_more_than_colour() -> None:
    views = [balance_view(snap(b, **kw)) for b, kw in
             (("10", {}), ("3", {}), ("0.1", {}), ("10", {"error": "down"}),
              ("10", {"checking": True}), (None, {}))]
    html = [view_html(v) for v in views]
    words = [re.search(r'class="rodin-state">([^<]*)<', h).group(1) for h in html]  # type: ignore[union-attr]
    assert words == ["ok", "low", "too low", "error", "checking", "unknown"]
    icons = [re.search(r'aria-hidden="true">([^<]*)<', h).group(1) for h in html]  # type: ignore[union-attr]
    assert len(set(icons)) == len(icons)
    outlines = [re.search(r'border:(\d+px \w+)', h).group(1) for h in html]  # type: ignore[union-attr]
    assert outlines[2] != outlines[3]  # "too low" and "error" share a red, not an outline
    assert len(set(outlines)) >= 4


def test_checking_dims_the_number_and_hides_the_old_error() -> None:
    failed = balance_view(snap("10", error="The Rodin API is unavailable (HTTP 503)."))
    assert failed.stale and failed.error
    assert "rodin-error" in view_html(failed) and "rodin-dim" in view_html(failed)
    checking = balance_view(snap("10", error="The Rodin API is unavailable.", checking=True))
    assert checking.word == "checking" and checking.error is None
    html = view_html(checking)
    assert "rodin-error" not in html and "unavailable" not in html
    assert "rodin-dim" in html and ">10<" in html  # the last number stays, dimmed
    fresh = view_html(balance_view(snap("10")))
    assert "rodin-dim" not in fresh and "rodin-stale" not in fresh


def test_the_error_line_is_whole_and_one_line() -> None:
    message = ("No Rodin API key: set RODIN_API_KEY (or HYPER3D_API_KEY) in the environment "
               "before starting Jupyter; never paste the key into a cell.")
    view = balance_view(snap(None, error=message + "\nTraceback (most recent call last):"))
    assert view.error == message
    html = view_html(view)
    assert message in html and "Traceback" not in html
    assert "white-space:normal" in html and "overflow-wrap:anywhere" in html
    assert view_text(view).endswith(message)
    assert one_line("first\nsecond") == "first"
    assert one_line("x" * 1000).endswith("…") and len(one_line("x" * 1000)) <= 500


def test_static_output_has_the_clock_time_live_has_the_age() -> None:
    view = balance_view(snap("10"))
    assert "just now" not in view_text(view) and "ago" not in view_text(view)
    assert CLOCK.search(view_text(view)) and "2026-12-01" in view_text(view)
    assert CLOCK.search(view_html(view))
    live = view_html(view, live=True)
    assert "12 s ago" in live and CLOCK.search(live)
    assert "not checked yet" in view_html(balance_view(snap(None)))


def test_spent_here_is_the_ledger_not_any_drop() -> None:
    # The balance fell from 12 to 4.5 elsewhere; this kernel's one cell cost 0.5.
    outside = snap("4.5", ledger=(entry("5", "4.5"),))
    assert spent_here(outside) == Decimal("0.5")
    view = balance_view(outside)
    assert "spent here: 0.5<" in view_html(view)
    assert "7.5" not in view_html(view) and "7.5" not in view_text(view)
    assert spent_here(snap("10")) == 0


def test_html_uses_theme_variables_and_no_script() -> None:
    html = view_html(balance_view(snap("10", error="down")))
    assert "<script" not in html and "<style" not in html
    assert "sans-serif;" not in html.split("font-family:", 1)[1][:10]
    assert "var(--jp-content-font-family" in html
    bare = re.sub(r"var\(--jp-[\w-]+, (?:[^()]|\([^()]*\))*\)", "VAR", html)
    hard = re.findall(r"#[0-9a-fA-F]{3,6}\b|rgba?\(", bare)
    assert hard == ["#000"], hard  # only the text on the light state tints
    assert "var(--jp-success-color" in view_html(balance_view(snap("10")))


def test_guard_messages_carry_one_prefix() -> None:
    assert one_line_message("guard: needs 0.5 credits") == "rodin_jupyter guard: needs 0.5 credits"
    assert one_line_message("The key was refused.") == "rodin_jupyter: The key was refused."
