"""The fields of a request body, as the guard prices them (multipart, urlencoded, JSON).

Only bodies already in memory are read: a generator or an open file would be consumed by
reading it, so such a billable request is refused with a line naming what it was, never
sent on a guess.
"""

from __future__ import annotations

import email.message
import email.parser
import email.utils
import json
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rodin_jupyter.errors import PricingError, RodinError

Fields = dict[str, list[str]]

PRICE_FIELDS = frozenset({"tier", "addons", "texture_mode", "mesh_mode", "quality",
                          "resolution", "material"})
"""Fields the ledger records besides the endpoint (whatever the price table reads)."""


class UnreadableBody(PricingError):
    """The guard cannot read a billable request's body, so it cannot price it."""


def header(headers: Any, name: str) -> str | None:
    """A header's value from a dict, a list of pairs or a case-insensitive mapping."""
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, Mapping) or hasattr(headers, "items") \
        else headers
    wanted = name.lower()
    for key, value in items:
        text = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if text.lower() == wanted:
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def _params(content_type: str) -> email.message.Message:
    msg = email.message.Message()
    msg["content-type"] = content_type
    return msg


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Part:
    """One multipart part as both the guard and the sandbox read it."""

    name: str | None
    filename: str | None
    content: bytes
    encoded_name: bool = False  # named in RFC 2231 form (name*=): ambiguous to price


class MultipartError(RodinError, ValueError):
    """A multipart body that cannot be split into parts unambiguously."""


def parse_multipart(body: bytes, boundary: str) -> tuple[list[Part], bool]:
    """Parts of a multipart/form-data body, and whether anything follows the close.

    A delimiter is CRLF ``--boundary`` (or ``--boundary`` as the first bytes), per RFC 2046:
    the same text inside a value is content. Headers go through the stdlib email parser
    (folding unfolded as any server would); one parser for the guard and the sandbox, so
    what the guard prices is what the sandbox charges.
    """
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    segments = (b"\r\n" + body).split(delimiter)
    if len(segments) < 2:
        raise MultipartError("multipart body has no parts")
    parts: list[Part] = []
    header_parser = email.parser.BytesHeaderParser()
    trailing = False
    for index, segment in enumerate(segments[1:], start=1):
        if segment.startswith(b"--"):
            rest = segments[index + 1:]
            trailing = bool(rest) or bool(segment[2:].strip())
            break
        padding, newline, part = segment.partition(b"\r\n")
        if not newline or padding.strip(b" \t"):
            raise MultipartError("malformed multipart delimiter line")
        if part.startswith(b"\r\n"):
            head, content = b"", part[2:]
        else:
            head, sep, content = part.partition(b"\r\n\r\n")
            if not sep:
                raise MultipartError("malformed multipart part")
        headers = header_parser.parsebytes(head + b"\r\n\r\n")
        if headers.defects:
            raise MultipartError("malformed multipart part headers")
        disposition = headers.get_all("content-disposition") or []
        if len(disposition) > 1:
            raise MultipartError("a multipart part with two Content-Disposition headers")
        if not disposition:
            parts.append(Part(None, None, content))
            continue
        raw = str(disposition[0])
        params = _params(raw)
        encoded = bool(re.search(r"(?:^|;)\s*(?:file)?name\*", raw, re.IGNORECASE))
        name = params.get_param("name")
        filename = params.get_param("filename")
        parts.append(Part(
            email.utils.collapse_rfc2231_value(name) if name is not None else None,
            email.utils.collapse_rfc2231_value(filename) if filename is not None else None,
            content, encoded))
    else:
        trailing = True  # no close delimiter: a truncated body
    return parts, trailing


def _multipart(body: bytes, boundary: str) -> Fields:
    """The guard's strict reading: anything two servers could read differently is refused."""
    try:
        parts, trailing = parse_multipart(body, boundary)
    except MultipartError as exc:
        raise UnreadableBody(str(exc)) from None
    if trailing:
        raise UnreadableBody("a multipart body with data after (or without) its close "
                             "delimiter")
    fields: Fields = {}
    for part in parts:
        if part.encoded_name:
            raise UnreadableBody("a multipart part named in RFC 2231 form (name*=)")
        if part.name is None:
            continue
        if part.name in PRICE_FIELDS and part.name in fields:
            raise UnreadableBody(f"a multipart body with two {part.name!r} fields")
        if part.filename is not None and part.name not in PRICE_FIELDS:
            fields.setdefault(part.name, []).append("<file>")
        else:
            fields.setdefault(part.name, []).append(_text(part.content))
    return fields


def _json_fields(data: Any) -> Fields:
    if not isinstance(data, dict):
        raise UnreadableBody("a JSON body that is not an object")
    fields: Fields = {}
    for key, value in data.items():
        if isinstance(value, str):
            fields[str(key)] = [value]
        elif value is None:
            continue
        else:
            fields[str(key)] = [json.dumps(value)]
    return fields


def kind_of(body: object) -> str:
    """'a generator', 'a file object (BufferedReader)': for the refusal line."""
    if hasattr(body, "read"):
        return f"a file object ({type(body).__name__})"
    if hasattr(body, "__next__"):
        return f"a generator ({type(body).__name__})"
    return f"a {type(body).__name__}"


def read_fields(content_type: str | None, body: object) -> Fields:
    """``{name: [values]}`` of a body in memory; UnreadableBody for anything else."""
    if body is None:
        return {}
    if isinstance(body, str):
        data = body.encode("utf-8")
    elif isinstance(body, (bytes, bytearray, memoryview)):
        data = bytes(body)
    else:
        raise UnreadableBody(f"its body is {kind_of(body)}, which the guard cannot read "
                             "without consuming it; send the fields as bytes or a dict")
    if not data.strip():
        return {}
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == "multipart/form-data":
        boundary = _params(content_type or "").get_param("boundary")
        if not isinstance(boundary, str) or not boundary:
            raise UnreadableBody("a multipart body without a boundary")
        return _multipart(data, boundary)
    if kind == "application/json" or (not kind and data.lstrip()[:1] == b"{"):
        try:
            return _json_fields(json.loads(data))
        except ValueError:
            raise UnreadableBody("a JSON body that does not parse") from None
    if kind in ("application/x-www-form-urlencoded", ""):
        pairs = urllib.parse.parse_qsl(_text(data), keep_blank_values=True)
        fields: Fields = {}
        for key, value in pairs:
            fields.setdefault(key, []).append(value)
        return fields
    raise UnreadableBody(f"a body of type {kind!r}")


__all__ = [
    "PRICE_FIELDS",
    "Fields",
    "MultipartError",
    "Part",
    "UnreadableBody",
    "header",
    "kind_of",
    "parse_multipart",
    "read_fields",
]
