"""A billable request that went out, settled from its answer for the account and ledger.

Refused (a 4xx, or an ``error`` in a 2xx body) is not spent; a 5xx or an exception midway
may have been charged, so it stays counted against the balance and budget (conservative)
but the ledger marks it ``failed`` and leaves it out of the total.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

from rodin_jupyter.balance.ledger import SpendEntry, get_ledger
from rodin_jupyter.balance.monitor import LedgerEntry, get_monitor
from rodin_jupyter.guard.decision import Account, Ticket


class Pending:
    """A billable request that went out: its credits held, its ledger entry open."""

    def __init__(self, account: Account, ticket: Ticket, entry: SpendEntry) -> None:
        self.account, self.ticket, self.entry = account, ticket, entry

    def done(self, status: int | None, body: bytes | None) -> None:
        """Settle from the answer: refused (4xx, or an error in a 2xx body) is not spent."""
        answer: dict[str, Any] = {}
        if body:
            try:
                parsed = json.loads(body)
                answer = parsed if isinstance(parsed, dict) else {}
            except ValueError:
                answer = {}
        uuid = answer.get("uuid") if isinstance(answer.get("uuid"), str) else None
        consumed = None
        try:
            if answer.get("consumed") is not None:
                consumed = Decimal(str(answer["consumed"]))
        except InvalidOperation:
            consumed = None
        if status is None or status >= 500:
            outcome = "failed"
        elif status >= 400 or answer.get("error"):
            outcome = "refused"
        else:
            outcome = "sent"
        self.account.settle(self.ticket, charged=outcome != "refused",
                                  accepted=outcome == "sent")
        get_ledger().close(self.entry, outcome, uuid, consumed)
        if outcome == "sent":
            self._tell_monitor()

    def _tell_monitor(self) -> None:
        """The panel's "spent here" sums the monitor's entries: one per accepted request,
        its balance before and after as the guard saw them."""
        entry, credits = self.entry, self.entry.credits
        before = self.ticket.seen if self.ticket.seen is not None else credits
        cell = f"In [{entry.cell}] " if entry.cell is not None else ""
        get_monitor().add_ledger_entry(LedgerEntry(f"{cell}POST /{entry.endpoint}", credits,
                                                   before, before - credits, entry.at))

    def failed(self) -> None:
        """The request raised midway: it may have been charged, so it stays counted."""
        self.account.settle(self.ticket, charged=True, accepted=False)
        get_ledger().close(self.entry, "failed")


def peek_body(response: Any) -> bytes | None:
    """The answer's bytes if already buffered, without consuming them (the caller reads
    them); None otherwise, and a 2xx then counts as spent (conservative)."""
    length = getattr(response, "length", None)
    if not isinstance(length, int) or length > 65536:
        return None
    data = response.peek(length)
    return data[:length] if isinstance(data, bytes) and len(data) >= length else None


__all__ = ["Pending", "peek_body"]
