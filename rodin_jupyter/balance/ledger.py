"""What each billable request cost: one entry per request the guard let out.

The guard writes here at send time and again when the answer arrives; ``%rodin_balance
--ledger`` reads it. No IPython: the cell number comes from a callback the notebook face
sets (:func:`set_cell_source`), so the core stays importable anywhere.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from rodin_jupyter.balance.display import credits_json

ZERO = Decimal(0)
STATUSES = ("pending", "sent", "refused", "failed")
SCALE_SETTING = "RodinMagics.balance_scale"
"""The setting that fixes a balance reported in another unit (added by the balance work)."""


@dataclass
class SpendEntry:
    """One billable request: what it asked for, what the price table says, what came back."""

    cell: int | None
    endpoint: str
    fields: dict[str, Any]
    credits: Decimal
    status: str = "pending"
    task_uuid: str | None = None
    consumed: Decimal | None = None
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def to_json(self) -> dict[str, Any]:
        """The issue's shape: cell, endpoint, tier, addons, credits, status, task_uuid, at."""
        out: dict[str, Any] = {"cell": self.cell, "endpoint": self.endpoint,
                               "tier": self.fields.get("tier"),
                               "addons": list(self.fields.get("addons") or [])}
        out.update({k: v for k, v in self.fields.items() if k not in ("tier", "addons")})
        out.update({"credits": credits_json(self.credits), "status": self.status,
                    "task_uuid": self.task_uuid, "consumed": credits_json(self.consumed),
                    "at": self.at.isoformat(timespec="seconds")})
        return out


class SpendLedger:
    """The entries of this kernel, thread-safe; ``total`` counts only what was sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[SpendEntry] = []
        self._cell_source: Callable[[], int | None] | None = None
        self._drops: list[Decimal] = []
        self.scale_note: str | None = None

    def set_cell_source(self, source: Callable[[], int | None] | None) -> None:
        """Who knows the running cell's number (the IPython face sets its execution count)."""
        self._cell_source = source

    def current_cell(self) -> int | None:
        source = self._cell_source
        if source is None:
            return None
        try:
            return source()
        except Exception:  # a broken callback must not stop a request being recorded
            return None

    def open(self, endpoint: str, fields: dict[str, Any], credits: Decimal) -> SpendEntry:
        """An entry for a request about to go out (status 'pending')."""
        entry = SpendEntry(self.current_cell(), endpoint, fields, credits)
        with self._lock:
            self._entries.append(entry)
        return entry

    def close(self, entry: SpendEntry, status: str, task_uuid: str | None = None,
              consumed: Decimal | None = None) -> None:
        """The answer arrived (or the request failed)."""
        with self._lock:
            entry.status, entry.task_uuid, entry.consumed = status, task_uuid, consumed

    def entries(self) -> list[SpendEntry]:
        with self._lock:
            return list(self._entries)

    def total(self) -> Decimal:
        """Credits of the requests the service accepted, by the price table."""
        return sum((e.credits for e in self.entries() if e.status == "sent"), ZERO)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._drops.clear()
            self.scale_note = None

    def reconcile(self, drop: Decimal, priced: Decimal) -> str | None:
        """A balance drop against what was priced between two quiet readings.

        When two drops in a row are the same multiple (10x, 100x, or a tenth) of the priced
        credits, the balance is in another unit: say so once, naming the setting.
        """
        if priced <= 0 or drop <= 0:
            return None
        ratio = drop / priced
        with self._lock:
            if self.scale_note is not None or ratio == 1:
                self._drops.clear()
                return None
            self._drops.append(ratio)
            last = self._drops[-2:]
            if len(last) < 2 or last[0] != last[1] or ratio not in (10, 100, Decimal("0.1")):
                return None
            self.scale_note = (
                f"the balance keeps dropping {format_ratio(ratio)}x what the price table "
                f"charged: it seems to count in another unit; set `%config "
                f"{SCALE_SETTING} = {format_ratio(ratio)}` (units per credit) so the guard "
                "reads it right.")
            return self.scale_note

    def to_json(self) -> dict[str, Any]:
        entries = self.entries()
        out: dict[str, Any] = {"entries": [e.to_json() for e in entries],
                               "total": credits_json(self.total())}
        if self.scale_note:
            out["note"] = self.scale_note
        return out


def format_ratio(value: Decimal) -> str:
    return f"{value.normalize():f}"


class LedgerView:
    """``%rodin_balance --ledger``: a table (text and HTML) or JSON."""

    def __init__(self, ledger: SpendLedger) -> None:
        self.data = ledger.to_json()

    def json_text(self) -> str:
        return json.dumps(self.data)

    def _rows(self) -> list[list[str]]:
        rows = []
        for e in self.data["entries"]:
            addons = ",".join(e["addons"]) or "-"
            rows.append([str(e["cell"] if e["cell"] is not None else "-"), e["endpoint"],
                         str(e["tier"] or "-"), addons, f"{e['credits']:g}", e["status"],
                         str(e["task_uuid"] or "-")])
        return rows

    def _footer(self) -> str:
        sent = len([e for e in self.data["entries"] if e["status"] == "sent"])
        text = (f"Sent {sent} billable request{'' if sent == 1 else 's'} for "
                f"{self.data['total']:g} credits by the price table.")
        return text + (f" Note: {self.data['note']}" if "note" in self.data else "")

    def __repr__(self) -> str:
        if not self.data["entries"]:
            return "No billable request has been sent with the guard on."
        head = ["cell", "endpoint", "tier", "addons", "credits", "status", "task"]
        rows = [head, *self._rows()]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        return "\n".join([*lines, self._footer()])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in ("cell", "endpoint", "tier", "addons",
                                                   "credits", "status", "task"))
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in self._rows())
        return (f'<table class="rodin-ledger"><thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table><p>{html.escape(self._footer())}</p>")


_ledger = SpendLedger()


def get_ledger() -> SpendLedger:
    """The process-wide ledger."""
    return _ledger


__all__ = ["LedgerView", "SpendEntry", "SpendLedger", "get_ledger"]
