"""Which requests are billable: a generation endpoint's path on any spelling of a host
that may reach the service. Pure logic, cached per configured base."""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
from urllib.parse import unquote, urlsplit

from rodin_jupyter.balance.settings import settings
from rodin_jupyter.guard.pricing import GENERATION_ENDPOINTS

SERVICE_BASES = ("https://api.hyper3d.com/api/v2", "https://hyperhuman.deemos.com/api/v2")
"""The service's default host and the legacy one: always guarded, whatever is configured."""


def origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute URL, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def host_key(host: str) -> str:
    """One spelling per host: lower case, no trailing dot or brackets, numeric IPv4 forms
    (``127.1``, ``2130706433``, ``0x7f.1``, ``::ffff:127.0.0.1``) as the resolver reads them."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        address = None
        if host and all(c in "0123456789abcdefx." for c in host):
            try:
                address = ipaddress.ip_address(socket.inet_aton(host))
            except OSError:
                address = None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address) if address is not None else host


def is_loopback(host: str) -> bool:
    """Any name for this machine: 127.0.0.0/8, ::1, 0.0.0.0 / :: (connect to self),
    ``localhost`` and ``*.localhost``."""
    key = host_key(host)
    if key == "localhost" or key.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(key)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def normal_path(path: str) -> str:
    """The path a server routes: percent-decoded, ``;params`` and dot segments and empty
    segments removed (``/api//v2/./%72odin;x/`` is ``/api/v2/rodin``)."""
    out: list[str] = []
    for segment in unquote(path).split("/"):
        segment = segment.split(";", 1)[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    return "/" + "/".join(out)


@functools.lru_cache(maxsize=8)
def _guarded(configured: str, environ: str) -> tuple[frozenset[str], frozenset[str], bool]:
    """(host keys, base paths, any base on loopback) of the service and the configured base."""
    hosts, paths, loopback = set(), {"/api/v2"}, False
    for base in (*SERVICE_BASES, configured, environ):
        where = origin(base.strip()) if base else None
        if where is None:
            continue
        hosts.add(host_key(where[1]))
        loopback = loopback or is_loopback(where[1])
        path = normal_path(urlsplit(base.strip()).path)
        if path != "/":
            paths.add(path)
    return frozenset(hosts), frozenset(paths), loopback


def guarded_origins() -> tuple[frozenset[str], frozenset[str], bool]:
    """The service's hosts plus the configured base (``%config`` or ``RODIN_API_BASE``)."""
    return _guarded(settings.client.base_url, os.environ.get("RODIN_API_BASE", ""))


def billable_endpoint(method: str | bytes, url: str) -> str | None:
    """'rodin' / 'rodin_texture_only' / 'bang' for a POST that may spend credits, else None.

    The path (normalised as a server would route it) must end in a generation endpoint.
    Then it is billable on a guarded host in any spelling, scheme or port (any loopback
    name when a base is on loopback), and on *any* host when the path is a base path plus
    the endpoint (``/api/v2/rodin``): a proxy, an IP literal or a DNS alias of the service
    is the same paid service. A false positive costs one balance check; a miss costs money.
    """
    if isinstance(method, bytes):
        method = method.decode("latin-1")
    if method.strip().upper() != "POST":
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    path = normal_path(parts.path)
    head, _, last = path.rpartition("/")
    if last not in GENERATION_ENDPOINTS:
        return None
    hosts, paths, loopback = guarded_origins()
    if (head or "/") in paths:
        return last
    if not host:
        return None
    if host_key(host) in hosts or (loopback and is_loopback(host)):
        return last
    return None


__all__ = ["SERVICE_BASES", "billable_endpoint", "guarded_origins", "host_key", "is_loopback",
           "normal_path", "origin"]
