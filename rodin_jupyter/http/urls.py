"""Where requests go, and the rule that keeps the key off plain HTTP."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from rodin_jupyter.errors import InsecureURLError

DEFAULT_BASE_URL = "https://api.hyper3d.com/api/v2"
BASE_VARIABLE = "RODIN_API_BASE"


def is_loopback_host(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1: the only hosts plain HTTP may reach."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_base_url(explicit: str | None = None,
                     environ: Mapping[str, str] | None = None) -> str:
    """The base URL from the argument, else ``RODIN_API_BASE``, else the real service.

    Refuses plain ``http://`` to any host but loopback: the key travels in a header,
    and a header over plain HTTP can be read by anyone on the path.
    """
    env = os.environ if environ is None else environ
    base = (explicit or env.get(BASE_VARIABLE, "") or DEFAULT_BASE_URL).strip().rstrip("/")
    try:
        parts = urlsplit(base)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError:  # e.g. "https://[" -- an invalid IPv6 address
        raise InsecureURLError(
            f"RODIN_API_BASE is not a valid URL; use one like {DEFAULT_BASE_URL}."
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InsecureURLError(
            f"RODIN_API_BASE must be an https:// URL such as {DEFAULT_BASE_URL}."
        )
    if parts.username or parts.password:
        raise InsecureURLError("RODIN_API_BASE must not carry a user name or password.")
    if parts.query or parts.fragment:
        raise InsecureURLError("RODIN_API_BASE must not carry a query string or fragment.")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise InsecureURLError(
            f"https is required for {parts.hostname}: plain http:// is only allowed for "
            "localhost / 127.0.0.1, so the API key is never sent in clear text."
        )
    return base


def host_of(url: str) -> str:
    """The host (and port) of a URL, for messages: never the path or query."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1] or "the service"
