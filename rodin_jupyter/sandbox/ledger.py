"""Thread-safe credit ledger and the sandbox's own price table.

The price logic lives here (not in the package's estimator) on purpose: the sandbox plays the
role of the real service, so it must not share code with the client-side estimate it checks.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

# Credits per call, following RODIN_API.md's price table.
TIER_CREDITS: dict[str, Decimal] = {
    "Sketch": Decimal("0.5"),
    "Regular": Decimal("0.5"),
    "Detail": Decimal("0.5"),
    "Smooth": Decimal("0.5"),
    "Gen-2": Decimal("0.5"),
    "Gen-2.5-Extreme-Low": Decimal("0.5"),
    "Gen-2.5-Low": Decimal("0.5"),
    "Gen-2.5-Medium": Decimal("0.5"),
    "Gen-2.5-High": Decimal("0.5"),
    "Gen-2.5-Extreme-High": Decimal("1.0"),
}
DEFAULT_TIER = "Regular"
ADDON_CREDITS: dict[str, Decimal] = {"HighPack": Decimal("1.0")}
TEXTURE_MODE_CREDITS: dict[str, Decimal] = {"extreme-high": Decimal("2.0")}
FLAT_CREDITS: dict[str, Decimal] = {
    "/rodin_texture_only": Decimal("0.5"),
    "/bang": Decimal("0.5"),
}

Fields = Mapping[str, Sequence[object]]


class SandboxRequestError(Exception):
    """A request the sandbox refuses; carries the HTTP status and the service's error code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _single(fields: Fields, name: str) -> object | None:
    """Return a field's only value; None when absent. Repeated fields are the caller's issue."""
    values = fields.get(name)
    if not values:
        return None
    return values[0]


def _parse_addons(fields: Fields) -> list[str]:
    """Decode ``addons`` the way the service does: one JSON-string array (or a bare name).

    A real array (repeated form fields, or a JSON list in a JSON body) makes the service
    answer 500, which looks retryable but is not; the sandbox copies that on purpose.
    """
    values = fields.get("addons")
    if not values:
        return []
    if len(values) > 1 or not isinstance(values[0], str):
        raise SandboxRequestError(
            500,
            "INTERNAL_SERVER_ERROR",
            "Internal Server Error (addons must be sent as one JSON string, e.g. '[\"HighPack\"]')",
        )
    raw = values[0].strip()
    if not raw:
        return []
    try:
        decoded: object = json.loads(raw)
    except ValueError:
        decoded = raw  # a bare name such as "HighPack"
    if isinstance(decoded, str):
        decoded = [decoded]
    if not isinstance(decoded, list) or not all(isinstance(a, str) for a in decoded):
        raise SandboxRequestError(
            400, "API_INVALID_REQUEST", "addons must be a JSON array of addon names"
        )
    return [a for a in decoded if isinstance(a, str)]


def sandbox_price(endpoint: str, fields: Fields) -> Decimal:
    """Credits the sandbox charges for one billable call, or SandboxRequestError if invalid."""
    if endpoint in FLAT_CREDITS:
        return FLAT_CREDITS[endpoint]
    if endpoint != "/rodin":
        raise SandboxRequestError(400, "API_INVALID_REQUEST", f"{endpoint} is not billable")
    tier = _single(fields, "tier")
    if tier is None or tier == "":
        tier = DEFAULT_TIER
    if not isinstance(tier, str) or tier not in TIER_CREDITS:
        raise SandboxRequestError(
            400,
            "API_INVALID_REQUEST",
            f"Unknown tier {str(tier)[:40]!r}; expected one of {', '.join(TIER_CREDITS)}",
        )
    credits = TIER_CREDITS[tier]
    for addon in _parse_addons(fields):
        if addon not in ADDON_CREDITS:
            raise SandboxRequestError(400, "API_INVALID_REQUEST", f"Unknown addon {addon[:40]!r}")
        credits += ADDON_CREDITS[addon]
    texture_mode = _single(fields, "texture_mode")
    if isinstance(texture_mode, str):
        credits += TEXTURE_MODE_CREDITS.get(texture_mode.strip().lower(), Decimal(0))
    return credits


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


def credits_json(value: Decimal) -> int | float:
    """JSON number for credits: int when whole (like the docs say), float otherwise (9.5)."""
    return int(value) if value == value.to_integral_value() else float(value)


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
