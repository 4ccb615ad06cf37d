"""One exception hierarchy, so callers can catch ``RodinError`` and show ``str(exc)``.

Every message is one line a person can act on, and none ever contains the API key:
messages are built from fixed text and numbers, never from request headers.
"""

from __future__ import annotations

RED = "\x1b[0;31m"
RESET = "\x1b[0m"
PREFIX = "rodin_jupyter"
PARTS = ("guard",)
"""Parts whose messages name themselves first ("guard: ...")."""


def one_line_message(message: str) -> str:
    """``rodin_jupyter: <message>``; a message that names its part ("guard: needs 0.5
    credits") reads ``rodin_jupyter guard: needs 0.5 credits``, not two prefixes in a row."""
    part, sep, rest = message.partition(": ")
    if sep and part in PARTS:
        return f"{PREFIX} {part}: {rest}"
    return f"{PREFIX}: {message}"


class RodinError(Exception):
    """Base of every error this package raises on purpose.

    IPython and ipykernel call ``_render_traceback_`` (a duck-typed protocol: no IPython
    import here) and show exactly those lines: an expected failure reads as one red line,
    not a traceback, and the cell still fails so "Run All" stops there.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"

    def _render_traceback_(self) -> list[str]:
        return [f"{RED}{one_line_message(str(self))}{RESET}"]


class MissingKeyError(RodinError):
    """No key was given and neither environment variable is set."""


class InsecureURLError(RodinError):
    """The base URL would send the key in clear text to a non-loopback host."""


class KeyRefusedError(RodinError):
    """The service answered 401/403: the key is wrong, revoked or lacks API access."""


class RateLimitedError(RodinError):
    """The service answered 429 and the retries ran out."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceError(RodinError):
    """The service answered with an error status (5xx, 404, an unexpected redirect...)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RodinNetworkError(RodinError):
    """The service could not be reached: DNS, refused or dropped connection, TLS."""


class RodinTimeoutError(RodinNetworkError):
    """The service did not answer in time (read timeout or the overall deadline)."""


class BadResponseError(RodinError):
    """The answer could not be read as a balance: HTML, broken JSON, missing field..."""


class PricingError(RodinError):
    """A cost could not be estimated: unknown tier, addon or endpoint; bad price table."""


class AddonsNotJSONError(PricingError):
    """``addons`` on the wire that is not a JSON string: the service answers 500 to that."""


__all__ = [
    "RED",
    "RESET",
    "AddonsNotJSONError",
    "BadResponseError",
    "InsecureURLError",
    "KeyRefusedError",
    "MissingKeyError",
    "PricingError",
    "RateLimitedError",
    "RodinError",
    "RodinNetworkError",
    "RodinTimeoutError",
    "ServiceError",
    "one_line_message",
]
