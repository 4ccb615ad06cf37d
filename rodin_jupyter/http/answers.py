"""Turning the service's answer into a balance, or into one of our errors.

Pure functions over bytes, so that property-based tests can throw anything at them:
the only outcomes are a finite, non-negative ``Decimal`` or a :class:`BadResponseError`.
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_DOWN, Decimal, InvalidOperation, localcontext
from typing import Any, NoReturn

from rodin_jupyter.errors import BadResponseError

MAX_BALANCE = Decimal(10) ** 12
_SAFE_CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,63}$")  # the documented shape of a code


def _reject_constant(name: str) -> NoReturn:
    raise BadResponseError(f"The balance answer contains {name}, which is not a number.")


def service_error_code(payload: Any) -> str | None:
    """The service's own ``error`` code when it looks like one (never echo arbitrary text)."""
    if isinstance(payload, dict):
        code = payload.get("error")
        if isinstance(code, str) and _SAFE_CODE.match(code):
            return code
    return None


def load_json(body: bytes) -> Any:
    """Decode a JSON answer with exact decimals; HTML and broken JSON become errors."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BadResponseError("The service's answer is not UTF-8 text.") from None
    stripped = text.lstrip()
    if not stripped:
        raise BadResponseError("The service's answer is empty.")
    if stripped.startswith("<"):
        raise BadResponseError(
            "The service answered with an HTML page, not JSON: check RODIN_API_BASE "
            "(a proxy or login page?)."
        )
    try:
        return json.loads(text, parse_float=Decimal, parse_int=Decimal,
                          parse_constant=_reject_constant)
    except BadResponseError:
        raise
    except (ValueError, RecursionError, InvalidOperation):
        raise BadResponseError("The service's answer is not valid JSON.") from None


def parse_balance(body: bytes) -> Decimal:
    """The balance in a ``{"balance": N}`` answer; anything else is a BadResponseError."""
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise BadResponseError("The balance answer is not a JSON object.")
    if "balance" not in payload:
        code = service_error_code(payload)
        detail = f" (service says {code})" if code else ""
        raise BadResponseError(f"The balance answer has no 'balance' field{detail}.")
    value = payload["balance"]
    if isinstance(value, bool) or not isinstance(value, Decimal):
        kind = "null" if value is None else type(value).__name__
        kind = {"str": "a string", "bool": "a boolean", "list": "a list",
                "dict": "an object"}.get(kind, kind)
        raise BadResponseError(f"The balance in the answer is {kind}, not a number.")
    if not value.is_finite():
        raise BadResponseError("The balance in the answer is not a finite number.")
    if value < 0:
        shown = f" ({value})" if value > -MAX_BALANCE else ""
        raise BadResponseError(f"The service reported a negative balance{shown}.")
    if value > MAX_BALANCE:
        raise BadResponseError("The balance in the answer is implausibly large.")
    return value


READING_PLACES = Decimal("1e-12")


def round_reading(value: Decimal) -> Decimal:
    """A balance rounded down to 12 decimal places (``-0`` becomes 0).

    With at most 12 integer digits (``MAX_BALANCE``), every sum and difference the guard
    makes then stays exact in Decimal's default 28 digits: 0.999... (29 nines) must not
    become 1 in ``balance - spent`` and pass a check for 1 credit.
    """
    with localcontext() as context:
        context.prec = 60
        rounded = value.quantize(READING_PLACES, rounding=ROUND_DOWN)
        if rounded == rounded.to_integral_value():
            return rounded.quantize(Decimal(1)) if rounded else Decimal(0)
        return rounded.normalize()
