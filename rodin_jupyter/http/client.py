"""The HTTP core: one session, explicit timeouts, bounded retries, typed errors.

Knows nothing of IPython or widgets. Only the free, read-only ``GET /check_balance``
is ever retried; nothing here sends a request that can spend credits.
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import logging
import random
import time
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

import requests
from urllib3.exceptions import HTTPError, ProtocolError

from rodin_jupyter.balance.settings import ClientSettings, balance_in_credits
from rodin_jupyter.errors import (
    BadResponseError,
    KeyRefusedError,
    RateLimitedError,
    RodinError,
    RodinNetworkError,
    RodinTimeoutError,
    ServiceError,
)
from rodin_jupyter.http.answers import parse_balance, round_reading
from rodin_jupyter.http.deadline import Watchdog
from rodin_jupyter.http.key import ApiKey, resolve_key
from rodin_jupyter.http.messages import (
    MAX_RETRY_AFTER,
    is_malformed_http,
    malformed,
    proxy_error,
    redirect_error,
    retry_after_seconds,
    scrub,
    scrubbed,
    status_error,
    tls_message,
    unusable_proxy,
)
from rodin_jupyter.http.reading import BalanceReading
from rodin_jupyter.http.transport import (
    BearerAuth,
    ca_bundle,
    make_session,
    prepare_get,
    proxy_for,
    read_capped,
)
from rodin_jupyter.http.urls import resolve_base

log = logging.getLogger("rodin_jupyter.http.client")
__all__ = ["MAX_RETRY_AFTER", "RodinClient", "check_balance"]

DEFAULT_CONNECT_TIMEOUT = ClientSettings.connect_timeout  # declared once, in the settings
DEFAULT_READ_TIMEOUT = ClientSettings.read_timeout
DEFAULT_DEADLINE = ClientSettings.deadline
DEFAULT_RETRIES = 2
MAX_BODY_BYTES = 64 * 1024
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})


class _Retry(Exception):
    """Internal: this attempt failed in a way worth another try."""

    def __init__(self, error: RodinError, wait: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.wait = wait




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
        self.base = resolve_base(base_url)
        self.base_url = self.base.url
        self._key = resolve_key(api_key)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline = deadline
        self.retries = max(0, retries)
        self.backoff = backoff
        self._session = make_session()

    def __repr__(self) -> str:
        return f"<RodinClient base_url={self.base_url!r} key={self._key!r}>"

    @property
    def key_source(self) -> str:
        """Where the key came from (an environment variable's name, or 'argument')."""
        return self._key.source

    @property
    def account(self) -> tuple[str, str]:
        """(base URL, key fingerprint): which account a reading from this client is for."""
        digest = hashlib.sha256(self._key.reveal().encode()).hexdigest()[:16]
        return self.base_url, digest

    # -- seam for http/jobs_api.py: the same session, key and timeouts for job calls ------

    def scrub(self, text: str) -> str:
        """``text`` with this client's key (or any long piece of it) redacted: the scrubber
        every piece of service text passes through (see ``http/untrusted.py``)."""
        return scrub(text, self._key.reveal())

    @property
    def session(self) -> requests.Session:
        """The pooled session (redirects off, deadline adapter), for the job endpoints."""
        return self._session

    def api_options(self) -> dict[str, Any]:
        """requests' keyword arguments for a call to this client's API host: the key as a
        redacted auth object, no redirects, and the proxy and CA bundle of the transport
        policy (the session trusts nothing from the environment by itself)."""
        proxy = proxy_for(self.base)
        return {"auth": BearerAuth(self._key), "allow_redirects": False,
                "proxies": {"https": proxy} if proxy else {},
                "verify": ca_bundle() if self.base.scheme == "https" else True}

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
            # objects, whose prepared request carries the Authorization header. Scrubbed:
            # nothing the server sent may carry the key (or a long piece of it) out.
            failure = scrubbed(copy.copy(exc), self._key.reveal())
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
                # the unit: balance_scale; rounded down so the guard's sums stay exact
                balance = round_reading(balance_in_credits(parse_balance(body)))
                log.debug("balance read from %s: %s", self.base.netloc, balance)
                return BalanceReading(balance, datetime.now(timezone.utc), account=self.account)
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
        host = self.base.netloc
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
            error = redirect_error(response, self.base.netloc)
            response.close()
            raise error
        return response

    def _send(self, url: str, host: str, remaining: float, start: float) -> bytes:
        timeout = (min(self.connect_timeout, remaining), min(self.read_timeout, remaining))
        proxy = proxy_for(self.base)
        proxies = {"https": proxy} if proxy else {}
        verify = ca_bundle() if self.base.scheme == "https" else True
        try:
            request = prepare_get(self._session, self.base, url, BearerAuth(self._key),
                                  self._refuse_redirect)
            with self._session.send(request, timeout=timeout, stream=True, verify=verify,
                                    proxies=proxies, allow_redirects=False) as response:
                return self._answer(response, host, start)
        except requests.exceptions.ProxyError as exc:
            error, again = proxy_error(exc, proxy or "", host)
            raise (_Retry(error) if again else error) from None
        except requests.exceptions.SSLError as exc:
            raise RodinNetworkError(tls_message(exc, host)) from None
        except requests.exceptions.Timeout:
            raise _Retry(RodinTimeoutError(
                f"{host} did not answer in time; check your network and try again.")) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
                ProtocolError, http.client.HTTPException) as exc:
            if is_malformed_http(exc):
                raise malformed(host) from None
            raise _Retry(RodinNetworkError(
                f"Could not reach {host}: check your network connection or RODIN_API_BASE."
            )) from None
        except requests.exceptions.TooManyRedirects:
            raise ServiceError(f"{host} redirected the balance check; not followed.") from None
        except (requests.exceptions.RequestException, HTTPError, OSError, ValueError) as exc:
            if proxy and isinstance(exc, (requests.exceptions.InvalidSchema,
                                          requests.exceptions.InvalidURL, ValueError)):
                raise unusable_proxy(exc, proxy) from None
            raise RodinNetworkError(
                f"The request to {host} failed ({type(exc).__name__}): check RODIN_API_BASE "
                "and your network settings.") from None

    def _answer(self, response: requests.Response, host: str, start: float) -> bytes:
        """The body of a good answer, or the error its status stands for."""
        status = response.status_code
        if status in (301, 302, 303, 307, 308):
            raise redirect_error(response, host)
        if status in (401, 403):
            raise KeyRefusedError(
                f"The Rodin API key was refused (HTTP {status}): check RODIN_API_KEY "
                "(API access needs a Business plan)."
            )
        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            hint = f"retry after {wait:.0f} s" if wait is not None else "wait a minute"
            raise _Retry(RateLimitedError(
                f"{host} is rate limiting requests (HTTP 429); {hint}.", wait), wait)
        if status in RETRYABLE_STATUS:
            raise _Retry(ServiceError(
                f"{host} is unavailable (HTTP {status}); try again in a minute.", status))
        if not 200 <= status < 300:
            raise status_error(status, host, len(self._key.reveal()))
        return read_capped(response, MAX_BODY_BYTES,
                           lambda: time.monotonic() - start > self.deadline,
                           lambda: self._deadline_error(host))


def check_balance(api_key: str | None = None, base_url: str | None = None) -> BalanceReading:
    """One-off balance check with a throwaway client (prefer a long-lived ``RodinClient``)."""
    with RodinClient(api_key, base_url) as client:
        return client.check_balance()
