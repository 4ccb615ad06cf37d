"""``argparse`` types for the sandbox's command-line options: a bad value is one clear line.

argparse turns only ValueError/TypeError/ArgumentTypeError from a ``type=`` into a usage
message; ``Decimal("abc")`` raises InvalidOperation and a huge port fails later with an
OverflowError traceback, so each option is checked here first.
"""

from __future__ import annotations

import argparse
import re
from decimal import Decimal

from rodin_jupyter.balance.settings import check_balance_scale

from .ledger import to_credits

_PORT = re.compile(r"[0-9]{1,5}")


def credits_arg(text: str) -> Decimal:
    """A starting balance in credits: a finite number >= 0 (``10``, ``2.5``)."""
    try:
        return to_credits(text.strip())
    except (ValueError, TypeError):
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a credit amount; give a number >= 0 such as 10 or 2.5"
        ) from None


def scale_arg(text: str) -> Decimal:
    """``check_balance`` units per credit: 1 (credits) or 10 (tenths)."""
    try:
        return check_balance_scale(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def port_arg(text: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    stripped = text.strip()
    if _PORT.fullmatch(stripped) is None or int(stripped) > 65535:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a port; give 0 (any free port) to 65535")
    return int(stripped)
