"""The words of the client's errors: what happened and what to do, never the key.

Text the service sends is untrusted. Messages are built from fixed text, numbers and the
host the user chose; the only piece of server text ever shown is a short vetted code, and
:func:`scrub` removes the key (or any long piece of it) from a message before it leaves.
"""

from __future__ import annotations

import base64
import http.client
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin

import requests
from urllib3.exceptions import InvalidChunkLength, ProtocolError
from urllib3.util import parse_url

from rodin_jupyter.errors import BadResponseError, RodinError, RodinNetworkError, ServiceError
from rodin_jupyter.http.urls import host_of

REDACTED = "<redacted>"
MIN_SECRET_RUN = 8
"""A run of this many characters of the key in a message counts as a leak."""
LONG_KEY = 200
"""A key longer than this is almost certainly not a key alone (Rodin keys are far shorter)."""
MAX_RETRY_AFTER = 24 * 3600.0
_BEARER = re.compile(r"(?i)\b(bearer|basic|token)(\s+|%20|\+)[^\s,;\"']+")


def scrub(text: str, secret: str) -> str:
    """``text`` with every run of ``MIN_SECRET_RUN``+ characters of ``secret`` redacted
    (also when spaces or punctuation split it), and any ``Bearer <token>`` (whoever's token
    it is) too. Case-insensitive."""
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if not secret:
        return text
    needles = [secret]
    for form in (secret, f"Bearer {secret}"):
        encoded = base64.b64encode(form.encode()).decode()
        needles += [encoded, encoded.rstrip("=")]
    for needle in needles[1:]:
        text = text.replace(needle, REDACTED)
    hidden = [False] * len(text)
    _hide_runs(secret.lower(), list(enumerate(text.lower())), hidden)
    # Again with only letters and digits on both sides: "RkTestK ey01234 56789ab" or
    # "RkTes.tKey..." is the key too. A false match costs a redacted word in a message.
    _hide_runs(_alnum(secret), [(i, ch) for i, ch in enumerate(text.lower())
                                if ch.isascii() and ch.isalnum()], hidden)
    out: list[str] = []
    for i, ch in enumerate(text):
        if not hidden[i]:
            out.append(ch)
        elif i == 0 or not hidden[i - 1]:
            out.append(REDACTED)
    return "".join(out)


def _alnum(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isascii() and ch.isalnum())


def _hide_runs(secret: str, chars: list[tuple[int, str]], hidden: list[bool]) -> None:
    """Mark in ``hidden`` the span of every run of ``MIN_SECRET_RUN`` characters of
    ``secret`` found in ``chars`` ((position in the text, lower-cased character) pairs)."""
    if not secret:
        return
    run = min(MIN_SECRET_RUN, len(secret))
    pieces = {secret[i:i + run] for i in range(len(secret) - run + 1)}
    joined = "".join(ch for _, ch in chars)
    for i in range(len(joined) - run + 1):
        if joined[i:i + run] in pieces:
            for j in range(chars[i][0], chars[i + run - 1][0] + 1):
                hidden[j] = True


def scrubbed(error: RodinError, secret: str) -> RodinError:
    """``error`` with its message scrubbed (same class and attributes, fresh args)."""
    clean = scrub(error.message, secret)
    if clean != error.message:
        error.message = clean
        error.args = (clean,)
    return error


def causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps: requests and urllib3 nest the real reason in args/reason."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for inner in (getattr(current, "reason", None), current.__cause__, current.__context__,
                      *current.args):
            if isinstance(inner, BaseException):
                todo.append(inner)


def is_malformed_http(exc: BaseException) -> bool:
    """The server answered, but not with HTTP we can read (a dropped connection is not this)."""
    for cause in causes(exc):
        if isinstance(cause, http.client.RemoteDisconnected):
            continue
        if isinstance(cause, (http.client.LineTooLong, http.client.IncompleteRead,
                              http.client.BadStatusLine, http.client.UnknownProtocol,
                              InvalidChunkLength)):
            return True
        if isinstance(cause, ProtocolError) and "IncompleteRead" in str(cause):
            return True
    return False


def malformed(host: str) -> BadResponseError:
    return BadResponseError(
        f"{host} sent a malformed HTTP answer (cut short or not HTTP): check that "
        "RODIN_API_BASE points at the Rodin API, or try again later.")


def tls_message(exc: BaseException, host: str) -> str:
    """Why the TLS handshake failed, in words that point at the right fix."""
    text = " ".join(str(c) for c in causes(exc)).lower()
    if any(s in text for s in ("wrong_version_number", "wrong version number",
                               "record layer failure", "http_request", "packet length too long",
                               "unexpected eof")):
        return (f"{host} does not speak TLS on that port (a plain-http server?): check "
                "RODIN_API_BASE (http:// is for a local sandbox only).")
    if "certificate" in text or "verify" in text or "hostname" in text:
        return (f"The TLS certificate of {host} could not be verified; for a private CA "
                "set REQUESTS_CA_BUNDLE.")
    return f"The TLS handshake with {host} failed: check RODIN_API_BASE, or try again later."


def status_error(status: int, host: str, key_length: int) -> ServiceError:
    """The error for a status that is neither 2xx, 401/403, 429 nor a retryable 5xx."""
    if status >= 500:
        text = f"{host} had an internal error (HTTP {status}); try again later."
    elif status == 404:
        text = (f"{host} has no balance endpoint at this address (HTTP 404): "
                "check RODIN_API_BASE (it should end in /api/v2).")
    elif status == 431 or (status in (400, 413, 414) and key_length > LONG_KEY):
        if key_length > LONG_KEY:
            text = (f"{host} refused the request (HTTP {status}): the key is too long "
                    f"({key_length} characters); check RODIN_API_KEY holds the key alone.")
        else:
            text = (f"{host} found the request headers too large (HTTP {status}): check "
                    "RODIN_API_KEY and any proxy in between.")
    elif status == 402:
        text = (f"{host} answered HTTP 402 (payment required): check your Hyper3D plan "
                "and credits.")
    elif status == 407:
        text = (f"{host} asked for proxy credentials (HTTP 407): check HTTPS_PROXY and "
                "RODIN_API_BASE.")
    elif status in (408, 425):
        text = f"{host} gave up waiting for the request (HTTP {status}); try again."
    elif status in (405, 410, 501):
        text = (f"{host} does not offer the balance check here (HTTP {status}): check "
                "RODIN_API_BASE (it should end in /api/v2).")
    elif status == 304:
        text = (f"{host} answered HTTP 304 (not modified) to a request that asked for no "
                "cache: check RODIN_API_BASE (a cache or proxy in between?).")
    elif 300 <= status < 400:
        text = (f"{host} answered HTTP {status} instead of a balance: check RODIN_API_BASE "
                "points at the Rodin API.")
    elif 400 <= status < 500:
        text = (f"{host} refused the balance check (HTTP {status}): check RODIN_API_BASE "
                "and RODIN_API_KEY, or try again later.")
    elif 100 <= status < 200:
        text = (f"{host} sent an interim answer (HTTP {status}) and no balance: check "
                "RODIN_API_BASE points at the Rodin API, or try again later.")
    else:
        text = (f"{host} answered with an unexpected status (HTTP {status}): check "
                "RODIN_API_BASE points at the Rodin API.")
    return ServiceError(text, status)


def proxy_error(exc: BaseException, proxy: str, host: str) -> tuple[RodinNetworkError, bool]:
    """The error when the proxy failed (it names the proxy, not the API host), and whether
    another try could help. The proxy is shown as host:port: never its credentials."""
    name = proxy_host(proxy)
    if any("407" in str(c) for c in causes(exc)):
        return RodinNetworkError(
            f"The proxy {name} asked for credentials (HTTP 407): check the user and password "
            "in HTTPS_PROXY."), False
    return RodinNetworkError(
        f"Could not get through the proxy {name}: check HTTPS_PROXY / NO_PROXY, "
        "or try again later."), True


def unusable_proxy(exc: BaseException, proxy: str) -> RodinNetworkError:
    """HTTPS_PROXY names no proxy requests can use (socks, an unreadable URL)."""
    name = proxy_host(proxy)
    what = ("HTTPS_PROXY is not a usable proxy URL" if name.startswith("(")
            else f"The proxy {name} in HTTPS_PROXY could not be used")
    return RodinNetworkError(f"{what} ({type(exc).__name__}): set it to an http:// or "
                             "https:// proxy URL (socks is not supported), or unset it.")


def proxy_host(proxy: str) -> str:
    """``host:port`` of a proxy URL, for messages: never its user name or password."""
    try:
        parts = parse_url(proxy)
    except ValueError:
        return "(unreadable proxy URL)"
    if not parts.host:
        return "(unreadable proxy URL)"
    return f"{parts.host}:{parts.port}" if parts.port else parts.host


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)  # "inf" or 1e308 must not reach a message


def redirect_error(response: requests.Response, host: str) -> ServiceError:
    """A redirect is never followed: the key must stay with the host the user chose."""
    location = response.headers.get("Location", "")
    try:
        target = host_of(urljoin(response.url, location)) if location else ""
    except ValueError:
        target = ""
    if not target or len(target) > 100 or not (target.isascii() and target.isprintable()):
        target = "another address"
    return ServiceError(
        f"{host} redirected the balance check to {target}; not followed, so the key stays "
        "with the host you chose. Check RODIN_API_BASE.",
        response.status_code,
    )
