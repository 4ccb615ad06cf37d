"""Thread-safe credit ledger, and what the sandbox charges for one call.

The sandbox charges with the package's own price table (``price_request``): one table, so
every spelling the estimator prices the sandbox accepts and charges the same, and a user's
override (prices file, ``Sandbox(prices=...)``) changes both. What the sandbox adds is the
service's behaviour around it: which encodings it refuses and how.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from rodin_jupyter.errors import AddonsNotJSONError, PricingError
from rodin_jupyter.guard.price_table import PriceTable
from rodin_jupyter.guard.pricing import price_request

Fields = Mapping[str, Sequence[object]]


class SandboxRequestError(Exception):
    """A request the sandbox refuses; carries the HTTP status and the service's error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def sandbox_price(endpoint: str, fields: Fields, prices: PriceTable | None = None) -> Decimal:
    """Credits the sandbox charges for one billable call, or SandboxRequestError if invalid.

    ``addons`` sent as a real array (repeated form fields, or a JSON list in a JSON body) or
    as text that is not JSON (``HighPack``) makes the service answer 500, which looks
    retryable but is not; the sandbox copies that.
    """
    addons = fields.get("addons") or []
    if len(addons) > 1 or (addons and not isinstance(addons[0], str)):
        raise _addons_not_json()
    text = {name: [v for v in values if isinstance(v, str)] for name, values in fields.items()}
    try:
        return price_request(endpoint, text, prices)
    except AddonsNotJSONError:
        raise _addons_not_json() from None
    except PricingError as exc:
        raise SandboxRequestError(400, "API_INVALID_REQUEST", str(exc)[:300]) from None


def _addons_not_json() -> SandboxRequestError:
    return SandboxRequestError(
        500,
        "INTERNAL_SERVER_ERROR",
        "Internal Server Error (addons must be sent as one JSON string, e.g. '[\"HighPack\"]')",
    )


def to_credits(value: str | int | float | Decimal) -> Decimal:
    """Parse a balance given as str/int/Decimal (float via its repr); finite and >= 0 only."""
    if isinstance(value, bool):
        raise TypeError("balance must be a number, not a bool")
    try:
        amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise ValueError(f"not a valid credit amount: {value!r}") from exc
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"credit amount must be finite and >= 0, got {value!r}")
    return amount


@dataclass(frozen=True)
class ChargeRecord:
    """One debit, kept so tests can check that charges add up to the balance drop."""

    task_uuid: str
    endpoint: str
    credits: Decimal
    at: float


class Ledger:
    """Balance plus charge history behind one lock, so concurrent debits never lose updates."""

    def __init__(self, balance: str | int | float | Decimal) -> None:
        self._lock = threading.Lock()
        self._balance = to_credits(balance)
        self._charges: list[ChargeRecord] = []

    @property
    def balance(self) -> Decimal:
        with self._lock:
            return self._balance

    def set_balance(self, balance: str | int | float | Decimal) -> None:
        amount = to_credits(balance)
        with self._lock:
            self._balance = amount

    @property
    def charges(self) -> list[ChargeRecord]:
        with self._lock:
            return list(self._charges)

    def try_charge(self, task_uuid: str, endpoint: str, credits: Decimal) -> ChargeRecord | None:
        """Debit atomically; None (and no change) when the balance does not cover the price."""
        with self._lock:
            if self._balance < credits:
                return None
            self._balance -= credits
            record = ChargeRecord(task_uuid, endpoint, credits, time.time())
            self._charges.append(record)
            return record
