"""The one door for text the service chose: error codes, messages, ids, file names, URLs.

A broken or hostile server may echo the key back in any field. Every piece of its text
passes here, with the client's scrubber (the key in hand) before it can reach a message, a
repr, widget state or a saved notebook: an error code must have the documented shape, a
message or id carrying the key (or a long piece of it) is dropped or refused, never shown.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from rodin_jupyter.errors import BadResponseError

Scrub = Callable[[str], str]
"""``RodinClient.scrub``: the text with the key (and any long piece of it) redacted."""

UNRECOGNISED = "an unrecognised error code"
CODE_SHAPE = re.compile(r"^[A-Z][A-Z0-9_]{1,63}$")
"""Documented codes: upper-case letters, digits, underscores (``API_INSUFFICIENT_FUNDS``)."""
NO_ERROR = frozenset({"", "OK", "NONE", "NULL"})
UUID_SHAPE = re.compile(r"^[0-9A-Fa-f][0-9A-Fa-f-]{0,63}$")
"""Task and job ids: uuids (hex and dashes), bounded."""
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9._~+/=-]{1,512}$")
"""Subscription keys are opaque tokens: printable URL/base64 characters, bounded."""
_SAFE_TEXT = re.compile(r"^[\w .,;:!?'()/%+-]{1,160}$")


def carries_key(text: str, scrub: Scrub) -> bool:
    """True when ``text`` (or its percent-decoded form) holds the key or a long piece of it."""
    return scrub(text) != text or scrub(unquote(text)) != unquote(text)


def error_code(payload: Any, scrub: Scrub) -> str | None:
    """The service's ``error`` code to show; :data:`UNRECOGNISED` when it is not of the
    documented shape or carries the key; ``None`` when there is no error."""
    raw = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(raw, str) or raw.strip().upper() in NO_ERROR:
        return None
    code = raw.strip()
    if not CODE_SHAPE.match(code) or carries_key(code, scrub):
        return UNRECOGNISED
    return code


def known_code(code: str | None) -> str | None:
    """``code`` when it is a code we can act on (not ``None`` or :data:`UNRECOGNISED`)."""
    return None if code in (None, UNRECOGNISED) else code


def message(payload: Any, scrub: Scrub) -> str:
    """The service's ``message`` when it is short plain text free of the key; else ``""``."""
    text = payload.get("message") if isinstance(payload, dict) else None
    if not isinstance(text, str) or not _SAFE_TEXT.match(text.strip()):
        return ""
    if any(len(word) >= 16 for word in re.findall(r"[\w-]+", text)):
        return ""
    if carries_key(text, scrub):
        return ""
    return text.strip().rstrip(".")


def service_id(value: Any, shape: re.Pattern[str], scrub: Scrub, what: str,
               after: str = "") -> str:
    """An id the service chose, checked for its shape and for the key; a one-line
    :class:`BadResponseError` (naming no part of it) otherwise."""
    if isinstance(value, str) and shape.match(value) and not carries_key(value, scrub):
        return value
    raise BadResponseError(f"The service's answer was unusable (its {what} is not a valid "
                           f"id){after}.")


def file_name(name: str, scrub: Scrub) -> str:
    """A download's file name, refused when it carries the key."""
    if carries_key(name, scrub):
        raise BadResponseError("The service's answer was unusable (a file name in the "
                               "download list is not valid).")
    return name


def file_url(url: str, scrub: Scrub) -> str:
    """A download URL, refused when it carries the key: storage links never need it, and a
    URL is logged (urllib3 at DEBUG) the moment it is fetched."""
    if carries_key(url, scrub):
        raise BadResponseError("The service's answer was unusable (a download URL carries "
                               "the API key); not fetched.")
    return url
