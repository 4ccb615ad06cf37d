"""Which requests are billable, and whether one may go out: the guard's pure logic.

The money rule, atomically under one lock: a billable request goes out only if
``balance - reserve - credits of billable requests still in flight >= price`` and the
budget allows it. The balance is the guard's last reading less what finished since that
reading started; when that cannot prove the request affordable, it is read fresh.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from rodin_jupyter.balance.display import format_credits
from rodin_jupyter.balance.settings import settings
from rodin_jupyter.errors import RodinError
from rodin_jupyter.guard.billable import SERVICE_BASES, billable_endpoint, guarded_origins

ZERO = Decimal(0)


class GuardBlocked(RodinError):
    """The guard refused a billable request; nothing of it was sent.

    Shown in a notebook as one line (``_render_traceback_``); it propagates from the call
    that tried to send, so the cell fails and "Run All" stops there.
    """

    shown = False

    def _render_traceback_(self) -> list[str]:
        self.shown = True  # the notebook face knows the line reached the user
        return super()._render_traceback_()

    def line(self) -> str:
        return super()._render_traceback_()[0]


def credits(value: Decimal) -> str:
    return format_credits(value)  # issue 10: rounded down and short, as every face shows it


@dataclass
class Ticket:
    """Credits held for one billable request until its answer settles them."""

    price: Decimal
    seen: Decimal | None = None  # the balance it was judged by (the last reading less spent)
    settled: bool = False


class Account:
    """Balance, reservations and budget of this kernel's billable requests."""

    def __init__(self, read_balance: Callable[[], Decimal],
                 still_valid: Callable[[], bool] = lambda: True) -> None:
        self._read_balance = read_balance
        self._still_valid = still_valid  # False once the account/base changed
        self.lock = threading.RLock()
        self.reading: Decimal | None = None
        self.read_at = 0.0
        self.mark = ZERO  # ``finished`` when that reading started
        self.finished = ZERO  # credits of requests that went out and may have been charged
        self.sent_total = ZERO  # of which the service accepted
        self.in_flight = ZERO
        self.budget: Decimal | None = None
        self.budget_mark = ZERO
        self.prev_sent = ZERO  # sent_total when the last quiet reading started
        self.on_drop: Callable[[Decimal, Decimal], None] | None = None

    # -- the numbers ---------------------------------------------------------------------

    def available(self) -> Decimal | None:
        """What the last reading still proves, or None if it is too old or missing."""
        age = time.monotonic() - self.read_at
        if (self.reading is None or age > settings.guard.reading_max_age
                or not self._still_valid()):
            return None
        return self.left()

    def left(self) -> Decimal:
        """The last reading less what finished since it started and what is in flight."""
        assert self.reading is not None
        return self.reading - (self.finished - self.mark) - self.in_flight

    def budget_left(self) -> Decimal | None:
        if self.budget is None:
            return None
        return self.budget - (self.finished - self.budget_mark) - self.in_flight

    def set_budget(self, budget: Decimal | None) -> None:
        with self.lock:
            self.budget, self.budget_mark = budget, self.finished

    def budget_spent(self) -> Decimal:
        with self.lock:
            return self.finished - self.budget_mark

    def read_fresh(self) -> Decimal:
        """A new reading; ``mark`` is taken first, so what finishes meanwhile still counts."""
        with self.lock:
            mark, sent_before = self.finished, self.sent_total
            quiet = self.in_flight == 0
            before = self.reading
            balance = self._read_balance()
            self.reading, self.read_at, self.mark = balance, time.monotonic(), mark
            if quiet and self.in_flight == 0:  # nothing in flight: the drop is ours alone
                if before is not None and self.on_drop is not None:
                    self.on_drop(before - balance, sent_before - self.prev_sent)
                self.prev_sent = sent_before
            return balance

    # -- the decision --------------------------------------------------------------------

    def admit(self, price: Decimal, what: str, reserve: Decimal, on_error: str,
              warn: Callable[[str], None]) -> Ticket:
        """Hold ``price`` for one request, or raise GuardBlocked. Atomic across threads."""
        with self.lock:
            self._check_budget(price, what)
            left = self.available()
            if left is None or left - reserve < price:
                if not self._read_or_allow(
                        what, on_error, warn, "not sent",
                        "`%rodin_guard on --on-error allow` sends such requests anyway",
                        "sending"):
                    return self._hold(price)
                left = self.left()
            if left - reserve < price:
                raise GuardBlocked(self._short(price, what, reserve, left, self.in_flight))
            return self._hold(price)

    def check_upfront(self, cost: Decimal, what: str, reserve: Decimal, on_error: str,
                      warn: Callable[[str], None]) -> None:
        """``%%rodin_guard``: do a fresh balance and the budget cover ``cost`` right now?"""
        with self.lock:
            self._check_budget(cost, what, "not run")
            if not self._read_or_allow(what, on_error, warn, "not run",
                                       "`--on-error allow` runs it anyway", "running"):
                return
            left = self.left()
            if left - reserve < cost:
                raise GuardBlocked(self._short(cost, what, reserve, left, self.in_flight,
                                               "not run"))

    def _read_or_allow(self, what: str, on_error: str, warn: Callable[[str], None],
                       verb: str, hint: str, going_on: str) -> bool:
        """Read the balance fresh: True if read, False if unreadable but ``on_error`` is
        "allow" (after a warning); otherwise fail closed with GuardBlocked."""
        try:
            self.read_fresh()
        except RodinError as exc:
            reason = str(exc).rstrip(".")
            if on_error != "allow":
                raise GuardBlocked(f"guard could not read the balance ({reason}): {what} "
                                   f"{verb}; {hint}") from None
            warn(f"rodin_jupyter: guard could not read the balance ({reason}); "
                 f"{going_on} {what} anyway (on_error=allow).")
            return False
        return True

    def _hold(self, price: Decimal) -> Ticket:
        seen = None if self.reading is None else self.reading - (self.finished - self.mark)
        self.in_flight += price
        return Ticket(price, seen)

    def _check_budget(self, price: Decimal, what: str, verb: str = "not sent") -> None:
        left = self.budget_left()
        if left is not None and left < price:
            assert self.budget is not None
            raise GuardBlocked(
                f"guard: {what} needs {credits(price)} credits, the budget has "
                f"{credits(max(left, ZERO))} of {credits(self.budget)} left: {verb}; "
                "`%rodin_budget N` sets a new budget")

    @staticmethod
    def _short(price: Decimal, what: str, reserve: Decimal, left: Decimal,
               in_flight: Decimal, verb: str = "not sent") -> str:
        need = f"needs {credits(price)} credit{'' if price == 1 else 's'}"
        if reserve:
            need += f" + {credits(reserve)} reserve"
        held = f" ({credits(in_flight)} held by requests in flight)" if in_flight else ""
        return (f"guard: {what} {need}, balance is {credits(left + in_flight)}{held}: {verb}; "
                "top up the balance or choose a cheaper tier")

    def settle(self, ticket: Ticket, charged: bool, accepted: bool) -> None:
        """The answer came: ``charged`` (may have been charged) moves it to finished."""
        with self.lock:
            if ticket.settled:
                return
            ticket.settled = True
            self.in_flight -= ticket.price
            if charged:
                self.finished += ticket.price
            if accepted:
                self.sent_total += ticket.price


__all__ = ["SERVICE_BASES", "Account", "GuardBlocked", "Ticket", "billable_endpoint",
           "guarded_origins"]
