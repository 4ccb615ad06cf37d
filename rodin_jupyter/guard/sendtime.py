"""The send-time guard: every billable request is checked as it is sent, however made.

Hooks sit where requests leave the process: ``requests.Session.send`` (any adapter),
urllib3's ``HTTPConnectionPool.urlopen``, ``http.client.HTTPConnection.request`` (urllib.
request, raw http.client) and httpcore's connection pools (httpx sync and async, httpcore)
when importable. While a billable request is sent, a thread-local mark keyed to it (its
endpoint and body object) lets the inner layers pass *that* request unchecked, so it is
checked and recorded once; any other request sent meanwhile (from a response hook, a
generator body, an adapter) is checked on its own. A forked child refuses billable requests.
"""

from __future__ import annotations

import http.client
import importlib
import os
import sys
import threading
import weakref
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rodin_jupyter.balance.ledger import get_ledger
from rodin_jupyter.balance.monitor import get_monitor
from rodin_jupyter.balance.settings import settings
from rodin_jupyter.errors import PricingError
from rodin_jupyter.guard.body import PRICE_FIELDS, UnreadableBody, header, read_fields
from rodin_jupyter.guard.decision import Account, GuardBlocked, billable_endpoint
from rodin_jupyter.guard.httpcore_hooks import hook_async_pool, hook_pool
from rodin_jupyter.guard.marks import FORKED, clear_marks, is_guarded, is_post, mark_stack, netloc
from rodin_jupyter.guard.pending import Pending, peek_body
from rodin_jupyter.guard.price_table import load_prices
from rodin_jupyter.guard.pricing import parse_addons, price_request


def _read_balance() -> Decimal:
    return get_monitor().refresh().balance


def _monitor_has_reading() -> bool:
    """A new key or base clears the monitor: the guard's old reading no longer applies."""
    return get_monitor().last is not None


def _warn(text: str) -> None:
    sys.stderr.write(text + "\n")


class SendTimeGuard:
    """Installs the hooks and decides for each billable request (one per process)."""

    def __init__(self) -> None:
        self.account = self.new_account()
        self._saved: list[tuple[Any, str, Any]] = []
        self._lock = threading.Lock()
        self._http_pending: weakref.WeakKeyDictionary[Any, Pending] = \
            weakref.WeakKeyDictionary()
        self.checked = 0
        self.refusals = 0
        self.resume_on_load = False  # on when the extension was unloaded: a reload resumes
        self.last_refusal: GuardBlocked | None = None
        self.forked = False
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """A forked child must not spend against the parent's reading, reservations or
        budget (a budget is per kernel, not per process): it refuses billable requests.
        Locks are new, since another thread may have held them at the fork."""
        self.forked = True
        self._lock = threading.Lock()
        self._http_pending = weakref.WeakKeyDictionary()
        clear_marks()
        budget = self.account.budget
        self.new_account()
        self.account.set_budget(budget)

    def new_account(self) -> Account:
        """A fresh account (no reading, nothing spent): for tests and a new identity."""
        self.account = Account(_read_balance, _monitor_has_reading)
        self.account.on_drop = self._reconcile
        return self.account

    @property
    def active(self) -> bool:
        return bool(self._saved)

    # -- the decision -------------------------------------------------------------------

    def admit(self, method: str | bytes, url: str, content_type: str | None,
              body: object) -> Pending | None:
        """None for a request that is not billable; else hold its price or GuardBlocked."""
        endpoint = billable_endpoint(method, url)
        if endpoint is None:
            return None
        self.checked += 1
        try:
            if self.forked:
                raise GuardBlocked(FORKED.format(what=f"POST /{endpoint}"))
            return self._admit(endpoint, content_type, body)
        except GuardBlocked as exc:
            self.note_refusal(exc)
            raise

    def note_refusal(self, exc: GuardBlocked) -> None:
        """Remember it: the notebook fails the cell even if its code swallowed the error."""
        with self._lock:
            self.refusals += 1
            self.last_refusal = exc

    def _admit(self, endpoint: str, content_type: str | None, body: object) -> Pending:
        what = f"POST /{endpoint}"
        try:
            fields = read_fields(content_type, body)
            price = price_request(endpoint, fields, load_prices(settings.guard.prices))
        except UnreadableBody as exc:
            raise GuardBlocked(f"guard: {what} not sent: {exc}") from None
        except PricingError as exc:
            raise GuardBlocked(f"guard: {what} not sent: {str(exc).rstrip('.')}") from None
        priced = self._priced_fields(fields)
        if priced.get("tier"):
            what += f" (tier {priced['tier']})"
        ticket = self.account.admit(price, what, settings.guard.reserve,
                                    settings.guard.on_error, _warn)
        return Pending(self.account, ticket, get_ledger().open(endpoint, priced, price))

    @staticmethod
    def _priced_fields(fields: dict[str, list[str]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in sorted(PRICE_FIELDS & set(fields)):
            values = fields[name]
            if name == "addons":
                out[name] = parse_addons(values[0]) if values else []
            elif values:
                out[name] = values[0]
        return out

    def _reconcile(self, drop: Decimal, priced: Decimal) -> None:
        note = get_ledger().reconcile(drop, priced)
        if note:
            _warn(f"rodin_jupyter: {note}")

    # -- install / uninstall: each hook remembers exactly what it replaced ------------------

    def install(self) -> None:
        with self._lock:
            if self._saved:
                return
            self._patch(http.client.HTTPConnection, "request", self._hook_http_request)
            self._patch(http.client.HTTPConnection, "putrequest", self._hook_putrequest)
            self._patch(http.client.HTTPConnection, "getresponse", self._hook_getresponse)
            for module, owner, name, make in (
                    ("urllib3.connectionpool", "HTTPConnectionPool", "urlopen",
                     self._hook_urlopen),
                    ("requests.sessions", "Session", "send", self._hook_requests),
                    ("httpcore", "ConnectionPool", "handle_request", hook_pool(self.admit)),
                    ("httpcore", "AsyncConnectionPool", "handle_async_request",
                     hook_async_pool(self.admit))):
                try:
                    cls = getattr(importlib.import_module(module), owner)
                except (ImportError, AttributeError):
                    continue
                self._patch(cls, name, make)

    def _patch(self, owner: Any, name: str, make: Callable[[Any], Any]) -> None:
        original = owner.__dict__[name]
        wrapper = make(original)
        wrapper.__wrapped__ = original
        wrapper.__name__ = getattr(original, "__name__", name)
        wrapper.__doc__ = getattr(original, "__doc__", None)
        setattr(owner, name, wrapper)
        self._saved.append((owner, name, original))

    def uninstall(self) -> None:
        """Put back every attribute exactly (the same objects that were there)."""
        with self._lock:
            for owner, name, original in reversed(self._saved):
                setattr(owner, name, original)
            self._saved.clear()

    # -- the hooks --------------------------------------------------------------------------

    def _guarded_call(self, pending: Pending | None, call: Callable[[], Any],
                      answer: Callable[[Any], tuple[int | None, bytes | None]] | None,
                      mark: tuple[str, object] | None = None) -> Any:
        """Send; while it is sent, the mark lets inner layers pass this one request."""
        if pending is None:
            return call()
        stack = mark_stack()
        if mark is not None:
            stack.append(mark)
        try:
            result = call()
        except BaseException:
            pending.failed()
            raise
        finally:
            if mark is not None:
                for index in range(len(stack) - 1, -1, -1):
                    if stack[index] is mark:
                        del stack[index]
                        break
        if answer is not None:
            try:
                status, body = answer(result)
            except Exception:
                status, body = None, None
            pending.done(status, body)
        return result

    def _hook_requests(self, original: Any) -> Any:
        def send(session: Any, request: Any, **kwargs: Any) -> Any:
            if not is_post(request.method):
                return original(session, request, **kwargs)
            endpoint = billable_endpoint(request.method, request.url)
            if endpoint is None or is_guarded(endpoint, request.body):
                return original(session, request, **kwargs)
            pending = self.admit(request.method, request.url,
                                 request.headers.get("Content-Type"), request.body)
            return self._guarded_call(pending, lambda: original(session, request, **kwargs),
                                      lambda r: (r.status_code, r.content),
                                      (endpoint, request.body))
        return send

    def _hook_urlopen(self, original: Any) -> Any:
        def urlopen(pool: Any, method: str, url: str, body: Any = None, headers: Any = None,
                    *args: Any, **kwargs: Any) -> Any:
            if not is_post(method):
                return original(pool, method, url, body, headers, *args, **kwargs)
            full = url if "://" in url else f"{pool.scheme}://{netloc(pool)}{url}"
            endpoint = billable_endpoint(method, full)
            if endpoint is None or is_guarded(endpoint, body):
                return original(pool, method, url, body, headers, *args, **kwargs)
            pending = self.admit(method, full, header(headers, "Content-Type"), body)
            preload = kwargs.get("preload_content", True)
            return self._guarded_call(
                pending, lambda: original(pool, method, url, body, headers, *args, **kwargs),
                lambda r: (r.status, r.data if preload else None), (endpoint, body))
        return urlopen

    @staticmethod
    def _conn_url(conn: Any, url: str) -> str:
        if "://" in url:
            return url
        scheme = "https" if isinstance(conn, http.client.HTTPSConnection) else "http"
        return f"{scheme}://{netloc(conn)}{url}"

    def _hook_http_request(self, original: Any) -> Any:
        def request(conn: Any, method: str, url: str, body: Any = None, headers: Any = None,
                    *args: Any, **kwargs: Any) -> Any:
            headers = {} if headers is None else headers
            if not is_post(method):
                return original(conn, method, url, body, headers, *args, **kwargs)
            endpoint = billable_endpoint(method, self._conn_url(conn, url))
            if endpoint is None or is_guarded(endpoint, body):
                return original(conn, method, url, body, headers, *args, **kwargs)
            pending = self.admit(method, self._conn_url(conn, url),
                                 header(headers, "Content-Type"), body)
            if pending is not None:
                with self._lock:
                    self._http_pending[conn] = pending  # settled by getresponse
            return self._guarded_call(
                pending, lambda: original(conn, method, url, body, headers, *args, **kwargs),
                None, (endpoint, body))
        return request

    def _hook_putrequest(self, original: Any) -> Any:
        def putrequest(conn: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            endpoint = billable_endpoint(method, self._conn_url(conn, url)) \
                if is_post(method) else None
            if endpoint is not None and not is_guarded(endpoint, any_body=True):
                exc = GuardBlocked("guard: a POST to a generation endpoint sent piece by "
                                   "piece (putrequest/send) cannot be priced: not sent; use "
                                   "conn.request(method, url, body, headers)")
                self.note_refusal(exc)
                raise exc
            return original(conn, method, url, *args, **kwargs)
        return putrequest

    def _hook_getresponse(self, original: Any) -> Any:
        def getresponse(conn: Any, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                pending = self._http_pending.pop(conn, None)
            if pending is None:
                return original(conn, *args, **kwargs)
            return self._guarded_call(pending, lambda: original(conn, *args, **kwargs),
                                      lambda r: (r.status, peek_body(r)))
        return getresponse


_guard = SendTimeGuard()


def get_guard() -> SendTimeGuard:
    """The process-wide send-time guard (the hooks are process-wide too)."""
    return _guard


__all__ = ["Pending", "SendTimeGuard", "get_guard"]
