"""Request-body parsing (multipart, urlencoded, JSON) without the removed ``cgi`` module."""

from __future__ import annotations

import email.message
import email.parser
import email.utils
import json
import urllib.parse
from dataclasses import dataclass, field

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
    """Split a multipart/form-data body by hand; exact bytes, no line-ending rewriting.

    A delimiter is ``--boundary`` at a line start (CRLF before it, or the body's first byte),
    as RFC 2046 says: the same bytes inside a value (``a--zz cube``) are content.
    """
    result = ParsedBody(kind=MULTIPART)
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    segments = (b"\r\n" + body).split(delimiter)
    if len(segments) < 2:
        raise _bad("multipart body has no parts")
    header_parser = email.parser.BytesHeaderParser()
    for segment in segments[1:]:  # segments[0] is the preamble
        if segment.startswith(b"--"):
            break  # closing delimiter
        padding, newline, part = segment.partition(b"\r\n")
        if not newline or padding.strip(b" \t"):
            raise _bad("malformed multipart delimiter line")
        if part.startswith(b"\r\n"):
            head, content = b"", part[2:]  # a part without headers
        else:
            head, sep, content = part.partition(b"\r\n\r\n")
            if not sep:
                raise _bad("malformed multipart part")
        headers = header_parser.parsebytes(head + b"\r\n\r\n")
        disposition = headers.get("content-disposition")
        if disposition is None:
            continue
        params = _header_params(str(disposition))
        name = email.utils.collapse_rfc2231_value(params.get_param("name") or "")
        filename_param = params.get_param("filename")
        if not name:
            continue
        if filename_param is not None:
            filename = email.utils.collapse_rfc2231_value(filename_param)
            result.files.setdefault(name, []).append(UploadedFile(filename, len(content)))
        else:
            text = content.decode("utf-8", errors="replace")
            result.fields.setdefault(name, []).append(text)
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
