"""Where requests go, and the rule that keeps the key off plain HTTP.

The host is decided by urllib3's parser, the one that connects; a base URL that Python's
``urllib.parse`` reads differently (a backslash, an odd authority) is refused, since a rule
checked with one parser and a connection made with another can disagree about the host.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from urllib3.util import parse_url

from rodin_jupyter.errors import InsecureURLError

DEFAULT_BASE_URL = "https://api.hyper3d.com/api/v2"
BASE_VARIABLE = "RODIN_API_BASE"
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._:[]")

Resolver = Callable[[str], list[str]]


def _system_resolver(host: str) -> list[str]:
    infos: list[Any] = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


resolve_host: Resolver = _system_resolver
"""The seam tests patch, so that a ``*.localhost`` check never leaves the machine."""


@dataclass(frozen=True)
class BaseURL:
    """A base URL as the connecting parser reads it: ``url`` is what requests are sent to."""

    scheme: str
    host: str
    port: int | None
    path: str
    loopback: bool = False
    """The host is loopback (a literal address, ``localhost``, or a ``*.localhost`` name
    that resolved to loopback only): plain HTTP is allowed and proxies are bypassed."""

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.path}"


def is_loopback_literal(host: str) -> bool:
    """True for an address in 127.0.0.0/8 or ::1 written as such."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_loopback_host(host: str) -> bool:
    """Plain HTTP may reach: 127.0.0.0/8, ::1, ``localhost``, and a ``*.localhost`` name
    only when every address it resolves to is loopback (through :data:`resolve_host`)."""
    host = host.strip("[]").lower()
    if host == "localhost" or is_loopback_literal(host):
        return True
    if not host.endswith(".localhost"):
        return False
    try:
        addresses = resolve_host(host)
    except (OSError, UnicodeError):
        return False
    return bool(addresses) and all(is_loopback_literal(a.split("%", 1)[0]) for a in addresses)


def _invalid() -> InsecureURLError:
    return InsecureURLError(f"RODIN_API_BASE is not a valid URL; use one like {DEFAULT_BASE_URL}.")


def parse_base_url(base: str) -> BaseURL:
    """Parse with urllib3 and with urllib.parse; refuse anything they could read apart."""
    if not base.isascii():
        raise InsecureURLError(
            "RODIN_API_BASE contains a non-ASCII character (a look-alike letter?); "
            f"type it as a plain URL such as {DEFAULT_BASE_URL}.")
    if any(ch == "\\" or ch.isspace() or not ch.isprintable() for ch in base):
        raise InsecureURLError(
            "RODIN_API_BASE contains a backslash, a space or a control character; "
            f"use a plain URL such as {DEFAULT_BASE_URL}.")
    scheme = base.split(":", 1)[0].lower() if ":" in base else ""
    if scheme not in ("http", "https") or not base[len(scheme):].startswith("://"):
        raise InsecureURLError(
            f"RODIN_API_BASE must be an https:// URL such as {DEFAULT_BASE_URL}.")
    try:
        parts = urlsplit(base)
        split_port = parts.port
        ours = parse_url(base)
    except ValueError:  # urllib3's LocationParseError is a ValueError too
        raise _invalid() from None
    authority = base[len(scheme) + 3:].split("/", 1)[0]
    if "@" in authority or parts.username or parts.password or ours.auth:
        raise InsecureURLError("RODIN_API_BASE must not carry a user name or password.")
    if parts.query or parts.fragment or ours.query or ours.fragment or "?" in base or "#" in base:
        raise InsecureURLError("RODIN_API_BASE must not carry a query string or fragment.")
    host = (ours.host or "").lower()
    if (not host or not set(host) <= _HOST_CHARS or authority.endswith(":")
            or host.strip("[]") != (parts.hostname or "") or ours.port != split_port
            or (ours.scheme or "").lower() != parts.scheme
            or (ours.path or "") != parts.path):
        raise _invalid()
    return BaseURL(parts.scheme, host.strip("[]"), ours.port, parts.path)


def resolve_base(explicit: str | None = None,
                 environ: Mapping[str, str] | None = None) -> BaseURL:
    """The base URL from the argument, else ``RODIN_API_BASE``, else the real service.

    Refuses plain ``http://`` to any host but loopback: the key travels in a header,
    and a header over plain HTTP can be read by anyone on the path.
    """
    env = os.environ if environ is None else environ
    base = (explicit or env.get(BASE_VARIABLE, "") or DEFAULT_BASE_URL).strip().rstrip("/")
    parsed = parse_base_url(base)
    parsed = dataclasses.replace(parsed, loopback=is_loopback_host(parsed.host))
    if parsed.scheme == "http" and not parsed.loopback:
        raise InsecureURLError(
            f"https is required for {parsed.host[:60]}: plain http:// is only allowed for "
            "localhost / 127.0.0.1, so the API key is never sent in clear text."
        )
    return parsed


def resolve_base_url(explicit: str | None = None,
                     environ: Mapping[str, str] | None = None) -> str:
    """:func:`resolve_base`, as the URL string requests are sent to."""
    return resolve_base(explicit, environ).url


def host_of(url: str) -> str:
    """The host (and port) of a URL, for messages: never the path or query."""
    try:
        parsed = parse_url(url)
    except ValueError:
        return "the service"
    if not parsed.host:
        return "the service"
    return parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
