"""Request-body parsing (multipart, urlencoded, JSON) without the removed ``cgi`` module."""

from __future__ import annotations

import email.message
import json
import urllib.parse
from dataclasses import dataclass, field

from rodin_jupyter.guard.body import MultipartError, parse_multipart

from .ledger import SandboxRequestError


@dataclass(frozen=True)
class UploadedFile:
    """A file part; only its name and size are kept, the sandbox never needs the bytes."""

    filename: str
    size: int


MULTIPART = "multipart/form-data"
URLENCODED = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass
class ParsedBody:
    """Fields as name -> list of values (repeats kept, as the price rules need them).

    ``kind`` is how the body was encoded (MULTIPART, URLENCODED, JSON; "" for no body):
    the generation endpoints take multipart only.
    """

    fields: dict[str, list[object]] = field(default_factory=dict)
    files: dict[str, list[UploadedFile]] = field(default_factory=dict)
    kind: str = ""


def _header_params(value: str) -> email.message.Message:
    """Let the ``email`` package parse a header's ;-parameters (quoting, RFC 2231)."""
    msg = email.message.Message()
    msg["content-type"] = value
    return msg


def _bad(message: str) -> SandboxRequestError:
    return SandboxRequestError(400, "API_INVALID_REQUEST", message)


def _parse_multipart(body: bytes, boundary: str) -> ParsedBody:
    """Split by the guard's parser (one reading of multipart for guard and sandbox)."""
    result = ParsedBody(kind=MULTIPART)
    try:
        parts, _trailing = parse_multipart(body, boundary)
    except MultipartError as exc:
        raise _bad(str(exc)) from None
    for part in parts:
        if not part.name:
            continue
        if part.filename is not None:
            result.files.setdefault(part.name, []).append(
                UploadedFile(part.filename, len(part.content)))
        else:
            result.fields.setdefault(part.name, []).append(
                part.content.decode("utf-8", errors="replace"))
    return result


def parse_body(content_type: str | None, body: bytes) -> ParsedBody:
    """Parse whatever a client sends: multipart (the documented form), urlencoded, or JSON."""
    if not body:
        return ParsedBody()
    params = _header_params(content_type or "application/octet-stream")
    kind = params.get_content_type()
    if kind == MULTIPART:
        boundary = params.get_param("boundary")
        if not isinstance(boundary, str) or not boundary:
            raise _bad("multipart/form-data without a boundary")
        return _parse_multipart(body, boundary)
    if kind == URLENCODED:
        try:
            pairs = urllib.parse.parse_qs(
                body.decode("utf-8"), keep_blank_values=True, strict_parsing=False
            )
        except UnicodeDecodeError as exc:
            raise _bad("form body is not UTF-8") from exc
        return ParsedBody(fields={k: list(v) for k, v in pairs.items()}, kind=URLENCODED)
    try:
        decoded: object = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad("request body is not valid JSON or form data") from exc
    if not isinstance(decoded, dict):
        raise _bad("JSON body must be an object")
    return ParsedBody(fields={str(k): [v] for k, v in decoded.items()}, kind=JSON)
