"""Numbers and ages for people: short, and never more than is there."""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal, localcontext


def describe_age(seconds: float | None) -> str:
    """'just now', '12 s ago', '3 min ago', '2 h ago' -- for people, not machines."""
    if seconds is None:
        return "never"
    if seconds < 2:
        return "just now"
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min ago"
    return f"{seconds // 3600:.0f} h ago"


DISPLAY_PLACES = Decimal("0.01")


def format_credits(value: Decimal | None) -> str:
    """A balance for people: '12.5', '3', '0.99', '—' when unknown.

    Rounded toward zero to two places, so it never shows more than is there (0.999... is
    '0.99', never '1'), and always short: '-0' is '0', and 1e-999999 is '0', not a million
    characters. Far beyond any real balance it falls back to a rounded-down '1.2345E+30'.
    """
    if value is None:
        return "—"
    if not value.is_finite():
        return "?"
    with localcontext() as context:
        context.prec = 40
        if abs(value) >= Decimal(10) ** 24:
            context.prec, context.rounding = 6, ROUND_DOWN
            return str(+value)
        shown = value.quantize(DISPLAY_PLACES, rounding=ROUND_DOWN)
        if shown == 0:
            return "0"
        return f"{shown.normalize():f}"


def exact_credits(value: Decimal) -> str:
    """The exact value, for machines: plain digits when short, else scientific notation."""
    if value.is_finite() and value == 0:
        return "0"
    if not value.is_finite() or abs(value.adjusted()) >= 40 or len(value.as_tuple().digits) > 60:
        return str(value)
    with localcontext() as context:
        context.prec = 80
        return f"{value.normalize():f}"


def credits_json(value: Decimal | None) -> int | float | None:
    """A credit amount for JSON: 2 rather than 2.0 (as the API docs write it), 0.5 rather
    than '0.5'."""
    if value is None:
        return None
    return int(value) if value == value.to_integral_value() else float(value)
