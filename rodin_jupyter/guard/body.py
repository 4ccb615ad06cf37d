"""The fields of a request body, as the guard prices them (multipart, urlencoded, JSON).

Only bodies already in memory are read: a generator or an open file would be consumed by
reading it, so such a billable request is refused with a line naming what it was, never
sent on a guess.
"""

from __future__ import annotations

import email.message
import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

from rodin_jupyter.errors import PricingError

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


def _param(disposition: bytes, name: bytes) -> str | None:
    """A ``name="..."`` parameter of a Content-Disposition header (a regex: the email
    package's parser costs ~30 µs a part, and only plain names matter for the price)."""
    match = re.search(rb'(?:^|;)\s*' + name + rb'\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))',
                      disposition, re.IGNORECASE)
    if match is None:
        return None
    return _text(match.group(1) if match.group(1) is not None else match.group(2))


def _multipart(body: bytes, boundary: str) -> Fields:
    fields: Fields = {}
    for segment in body.split(b"--" + boundary.encode("latin-1"))[1:]:
        if segment.startswith(b"--"):
            break
        head, sep, value = segment.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            head, sep, value = segment.lstrip(b"\n").partition(b"\n\n")
        if not sep:
            raise UnreadableBody("a multipart part without headers")
        disposition = next((line.split(b":", 1)[1] for line in head.splitlines()
                            if line.lower().startswith(b"content-disposition:")), b"")
        if re.search(rb"(?:^|;)\s*(?:file)?name\*", disposition):
            raise UnreadableBody("a multipart part named in RFC 2231 form (name*=)")
        name = _param(disposition, b"name")
        if name is None:
            continue
        if value.endswith(b"\r\n"):
            value = value[:-2]
        elif value.endswith(b"\n"):
            value = value[:-1]
        if _param(disposition, b"filename") is not None and name not in PRICE_FIELDS:
            fields.setdefault(name, []).append("<file>")
        else:
            fields.setdefault(name, []).append(_text(value))
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


__all__ = ["PRICE_FIELDS", "Fields", "UnreadableBody", "header", "kind_of", "read_fields"]
