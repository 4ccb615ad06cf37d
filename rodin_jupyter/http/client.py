"""The HTTP core: one session, explicit timeouts, bounded retries, typed errors.

Knows nothing of IPython or widgets. Only the free, read-only ``GET /check_balance``
is ever retried; nothing here sends a request that can spend credits.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any
from urllib.parse import urljoin

import requests
import requests.auth

from rodin_jupyter._version import __version__
from rodin_jupyter.balance.settings import balance_in_credits
from rodin_jupyter.errors import (
    BadResponseError,
    KeyRefusedError,
    RateLimitedError,
    RodinError,
    RodinNetworkError,
    RodinTimeoutError,
    ServiceError,
)
from rodin_jupyter.http.answers import parse_balance
from rodin_jupyter.http.deadline import DeadlineAdapter, Watchdog
from rodin_jupyter.http.key import ApiKey, resolve_key
from rodin_jupyter.http.urls import host_of, resolve_base_url

log = logging.getLogger("rodin_jupyter.http.client")

DEFAULT_CONNECT_TIMEOUT = 3.05
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_DEADLINE = 25.0
DEFAULT_RETRIES = 2
MAX_BODY_BYTES = 64 * 1024
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 24 * 3600.0


@dataclass(frozen=True)
class BalanceReading:
    """A balance and when it was read (wall clock for people, monotonic for ages)."""

    balance: Decimal
    checked_at: datetime
    monotonic: float = field(default_factory=time.monotonic, compare=False)

    def age(self) -> float:
        """Seconds since the reading was taken."""
        return max(0.0, time.monotonic() - self.monotonic)


class _Retry(Exception):
    """Internal: this attempt failed in a way worth another try."""

    def __init__(self, error: RodinError, wait: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait


def _retry_after_seconds(value: str | None) -> float | None:
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


class _Secret(str):
    """A header value that never shows itself: ``%xmode Verbose`` prints frame locals."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<redacted>'"


class _BearerAuth(requests.auth.AuthBase):
    """Sets ``Authorization`` on the prepared request, as a :class:`_Secret`.

    An auth object rather than a plain header: requests then never swaps in credentials
    from ``~/.netrc``, and the header's value shows as redacted in any traceback.
    """

    def __init__(self, key: ApiKey) -> None:
        self._key = key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = _Secret(f"Bearer {self._key.reveal()}")
        return request

    def __repr__(self) -> str:
        return "<bearer auth: redacted>"


def _redirect_error(response: requests.Response, host: str) -> ServiceError:
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


class RodinClient:
    """A client for the Rodin API's balance endpoint.

    The key comes from the argument, else ``RODIN_API_KEY``, else ``HYPER3D_API_KEY``;
    the base URL from the argument, else ``RODIN_API_BASE``, else the real service.
    """

    def __init__(
        self,
        api_key: str | ApiKey | None = None,
        base_url: str | None = None,
        *,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        deadline: float = DEFAULT_DEADLINE,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.5,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self._key = resolve_key(api_key)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline = deadline
        self.retries = max(0, retries)
        self.backoff = backoff
        self._session = requests.Session()
        self._session.headers["User-Agent"] = f"rodin-jupyter/{__version__}"
        self._session.max_redirects = 0
        for prefix in ("https://", "http://"):
            self._session.mount(prefix, DeadlineAdapter())

    def __repr__(self) -> str:
        return f"<RodinClient base_url={self.base_url!r} key={self._key!r}>"

    @property
    def key_source(self) -> str:
        """Where the key came from (an environment variable's name, or 'argument')."""
        return self._key.source

    # -- seam for http/jobs_api.py: the same session, key and timeouts for job calls ------

    @property
    def session(self) -> requests.Session:
        """The pooled session (redirects off, deadline adapter), for the job endpoints."""
        return self._session

    def api_options(self) -> dict[str, Any]:
        """requests' keyword arguments for a call to this client's API host: the key as a
        redacted auth object, no redirects. (Whatever else such a call needs, e.g. proxy or
        CA bundle, belongs here, so the job calls get it too.)"""
        return {"auth": _BearerAuth(self._key), "allow_redirects": False}

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def __enter__(self) -> RodinClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- the balance -------------------------------------------------------------------

    def check_balance(self) -> BalanceReading:
        """Ask the service for the balance now; retries transient failures within the deadline."""
        try:
            return self._check_balance()
        except RodinError as exc:
            # A fresh copy: no traceback, __context__ or __cause__ leading back to requests'
            # objects, whose prepared request carries the Authorization header.
            failure = copy.copy(exc)
        raise failure

    def _check_balance(self) -> BalanceReading:
        url = f"{self.base_url}/check_balance"
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            remaining = self.deadline - (time.monotonic() - start)
            try:
                body = self._get(url, remaining, start)
                balance = balance_in_credits(parse_balance(body))  # the unit: balance_scale
                log.debug("balance read from %s: %s", host_of(url), balance)
                return BalanceReading(balance, datetime.now(timezone.utc))
            except BadResponseError as exc:  # say what to do, not only what was wrong
                message = str(exc)
                if "RODIN_API_BASE" not in message:
                    message += (" Check that RODIN_API_BASE points at the Rodin API, "
                                "or try again later.")
                raise BadResponseError(message) from None
            except _Retry as retry:
                error = retry.error
                if attempt > self.retries:
                    raise error from None
                wait = retry.wait
                if wait is None:
                    wait = self.backoff * (2 ** (attempt - 1)) * (0.5 + random.random())
                left = self.deadline - (time.monotonic() - start)
                if wait >= left - 0.05:
                    raise error from None
                log.debug("retrying balance check in %.2f s after: %s", wait, error)
                time.sleep(wait)

    def _deadline_error(self, host: str) -> RodinTimeoutError:
        return RodinTimeoutError(f"{host} did not answer in time (gave up after "
                                 f"{self.deadline:g} s); check your network and try again.")

    def _get(self, url: str, remaining: float, start: float) -> bytes:
        """One GET; returns the body of a 2xx answer or raises (``_Retry`` when transient)."""
        host = host_of(url)
        if remaining <= 0:
            raise self._deadline_error(host)
        watchdog = Watchdog(remaining)
        try:
            with watchdog:
                body = self._send(url, host, remaining, start)
        except (_Retry, RodinError):
            if watchdog.fired:
                raise self._deadline_error(host) from None
            raise
        if watchdog.fired:  # a body cut short by the hang-up must not pass for an answer
            raise self._deadline_error(host)
        return body

    def _refuse_redirect(self, response: requests.Response, *args: Any,
                         **kwargs: Any) -> requests.Response:
        """Response hook: stop at a redirect before requests reads its whole body."""
        if response.is_redirect:
            error = _redirect_error(response, host_of(response.url))
            response.close()
            raise error
        return response

    def _send(self, url: str, host: str, remaining: float, start: float) -> bytes:
        timeout = (min(self.connect_timeout, remaining), min(self.read_timeout, remaining))
        try:
            with self._session.get(url, auth=_BearerAuth(self._key),
                                   headers={"Accept": "application/json"},
                                   timeout=timeout, stream=True,
                                   allow_redirects=False,
                                   hooks={"response": self._refuse_redirect}) as response:
                status = response.status_code
                if 300 <= status < 400:
                    raise _redirect_error(response, host)
                if status in (401, 403):
                    raise KeyRefusedError(
                        f"The Rodin API key was refused (HTTP {status}): check RODIN_API_KEY "
                        "(API access needs a Business plan)."
                    )
                if status == 429:
                    wait = _retry_after_seconds(response.headers.get("Retry-After"))
                    hint = f"retry after {wait:.0f} s" if wait is not None else "wait a minute"
                    raise _Retry(RateLimitedError(
                        f"{host} is rate limiting requests (HTTP 429); {hint}.", wait), wait)
                if status in RETRYABLE_STATUS:
                    raise _Retry(ServiceError(
                        f"{host} is unavailable (HTTP {status}); try again in a minute.", status))
                if status >= 500:
                    raise ServiceError(
                        f"{host} had an internal error (HTTP {status}); try again later.", status)
                if status == 404:
                    raise ServiceError(
                        f"{host} has no balance endpoint at this address (HTTP 404): "
                        "check RODIN_API_BASE (it should end in /api/v2).", status)
                if not 200 <= status < 300:
                    raise ServiceError(
                        f"{host} answered HTTP {status} to the balance check.", status)
                return self._read_body(response, start)
        except requests.exceptions.SSLError:
            raise RodinNetworkError(
                f"The TLS certificate of {host} could not be verified; for a private CA "
                "set REQUESTS_CA_BUNDLE."
            ) from None
        except requests.exceptions.Timeout:
            raise _Retry(RodinTimeoutError(
                f"{host} did not answer in time; check your network and try again.")) from None
        except (requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError):
            raise _Retry(RodinNetworkError(
                f"Could not reach {host}: check your network connection or RODIN_API_BASE."
            )) from None
        except requests.exceptions.TooManyRedirects:
            raise ServiceError(f"{host} redirected the balance check; not followed.") from None
        except requests.exceptions.RequestException:
            raise RodinNetworkError(f"The request to {host} failed.") from None

    def _read_body(self, response: requests.Response, start: float) -> bytes:
        """Read at most ``MAX_BODY_BYTES`` and never past the deadline."""
        length = response.headers.get("Content-Length", "")
        if length.isascii() and length.isdigit() and int(length) > MAX_BODY_BYTES:
            raise BadResponseError("The balance answer is far too large to be a balance.")
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(8192):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise BadResponseError("The balance answer is far too large to be a balance.")
            if time.monotonic() - start > self.deadline:
                raise self._deadline_error(host_of(response.url))
            chunks.append(chunk)
        return b"".join(chunks)


def check_balance(api_key: str | None = None, base_url: str | None = None) -> BalanceReading:
    """One-off balance check with a throwaway client (prefer a long-lived ``RodinClient``)."""
    with RodinClient(api_key, base_url) as client:
        return client.check_balance()
