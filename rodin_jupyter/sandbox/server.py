"""A local, Rodin-compatible HTTP server with a credit ledger and fault injection.

Demos, notebooks and tests point the client at it instead of the paid service: no real key,
no network, and every charge is recorded so tests can prove nothing was billed twice. It
follows the documented request rules and answer shapes (see routes.py, rules.py,
answers.py) and charges with the package's own price table.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from rodin_jupyter.balance.settings import check_balance_scale
from rodin_jupyter.guard.price_table import PriceTable, load_prices

from . import answers
from .answers import Response
from .faults import FaultPlan, make_fault
from .httpd import (
    API_PREFIX,
    Incoming,
    SandboxHTTPServer,
    loopback_bind_address,
    normalize_path,
)
from .ledger import ChargeRecord, Ledger
from .request_log import RequestLog, RequestRecord
from .routes import Service
from .tasks import DEFAULT_URL_TTL, FAILED, DownloadLinks, TaskBoard

SANDBOX_KEY = "sandbox-key-not-a-real-secret"

logger = logging.getLogger("rodin_jupyter.sandbox")


class Sandbox:
    """Local Rodin API stand-in: ``with Sandbox() as sb: client(base_url=sb.base_url, ...)``.

    ``balance`` is in credits; ``balance_scale`` is how many ``check_balance`` units it
    reports per credit: 1, or 10 to play a service that reports tenths. ``prices`` overrides the
    price table (a PriceTable or a mapping like ``DEFAULT_PRICES``; default: the package's
    table with ``RODIN_PRICES_FILE``). ``max_parallel`` refuses a submission while that many
    tasks run; ``url_ttl`` is how long a download link works.
    """

    def __init__(
        self,
        balance: str | int | float | Decimal = "10",
        api_key: str = SANDBOX_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        job_seconds: float = 0.6,
        prices: PriceTable | Mapping[str, Any] | None = None,
        balance_scale: int | str | Decimal = 1,
        max_parallel: int | None = None,
        url_ttl: float = DEFAULT_URL_TTL,
    ) -> None:
        if not isinstance(api_key, str) or not api_key or any(c.isspace() for c in api_key):
            raise ValueError("api_key must be a non-empty string without whitespace")
        if job_seconds < 0:
            raise ValueError("job_seconds must be >= 0")
        scale = check_balance_scale(balance_scale)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be a whole number from 0 to 65535, not {port!r}")
        if max_parallel is not None and max_parallel < 1:
            raise ValueError("max_parallel must be >= 1 or None")
        if url_ttl < 0:
            raise ValueError("url_ttl must be >= 0")
        self._bind_host = loopback_bind_address(host)
        self._port = int(port)
        self._api_key = api_key
        self._ledger = Ledger(balance)
        self._board = TaskBoard(float(job_seconds))
        self._links = DownloadLinks(float(url_ttl))
        self._plan = FaultPlan()
        table = prices if isinstance(prices, PriceTable) else load_prices(prices)
        self._service = Service(self._ledger, self._board, self._links, self._plan, table,
                                scale, max_parallel, lambda: self.origin)
        self._log = RequestLog()
        self._server: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()

    # ----- lifecycle -------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Bind and serve in a daemon thread; returns once the socket is listening."""
        if self._server is not None:
            raise RuntimeError("Sandbox is already running")
        server = SandboxHTTPServer((self._bind_host, self._port), self, ":" in self._bind_host)
        self._stop_event.clear()
        self._server = server
        started = threading.Event()

        def serve() -> None:
            started.set()
            server.serve_forever(poll_interval=0.05)

        self._thread = threading.Thread(target=serve, name="rodin-sandbox", daemon=True)
        self._thread.start()
        started.wait(5)
        return self

    def stop(self) -> None:
        """Stop serving, hang up open connections and join every thread; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stop_event.set()
        server.shutdown()
        server.server_close()
        server.close_connections(timeout=5.0)
        if thread is not None:
            thread.join(5.0)
        self._server = None
        self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----- public state -----------------------------------------------------------------

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("Sandbox is not running; call start() first")
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        """Scheme, host and port; download URLs live here, outside /api/v2, like presigned URLs."""
        host = f"[{self._bind_host}]" if ":" in self._bind_host else self._bind_host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + API_PREFIX

    @property
    def balance(self) -> Decimal:
        """The balance in credits (``check_balance`` reports it times ``balance_scale``)."""
        return self._ledger.balance

    def set_balance(self, balance: str | int | float | Decimal) -> None:
        self._ledger.set_balance(balance)

    @property
    def balance_scale(self) -> Decimal:
        return self._service.balance_scale

    @property
    def prices(self) -> PriceTable:
        return self._service.prices

    @property
    def job_seconds(self) -> float:
        return self._board.job_seconds

    @job_seconds.setter
    def job_seconds(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("job_seconds must be >= 0")
        self._board.job_seconds = float(seconds)

    @property
    def charges(self) -> list[ChargeRecord]:
        return self._ledger.charges

    def spent(self) -> Decimal:
        """Credits charged so far: what the notebook run would have cost."""
        return sum((c.credits for c in self._ledger.charges), Decimal(0))

    @property
    def requests(self) -> list[RequestRecord]:
        return self._log.records()

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Number of recorded requests matching method and path (None matches any)."""
        return self._log.count(method, None if path is None else normalize_path(path))

    # ----- fault injection --------------------------------------------------------------

    def inject_fault(
        self,
        path: str | None = None,
        status: int | None = 503,
        body: bytes | str = b"",
        content_type: str = "text/plain",
        delay: float = 0.0,
        times: int | None = 1,
        headers: Mapping[str, str] | None = None,
        drop: bool = False,
    ) -> None:
        """Answer the next ``times`` requests to ``path`` with this instead of the real answer.

        ``path`` None matches any path; ``times`` None lasts until clear_faults(). Only a
        request that reaches an endpoint (right key, known path and method) takes a fault;
        the others get their usual 401/404/405. Faulted requests are recorded and never
        charge. Extension: ``status=None`` lets the real handler run (and charge) and then
        applies only ``delay``/``drop`` -- the "charged, but the answer never arrived" case
        a safe client must survive.
        """
        self._plan.add(make_fault(None if path is None else normalize_path(path), status,
                                  body, content_type, delay, times, headers, drop))

    def drop_after_charge(self, path: str = "/rodin", times: int | None = 1) -> None:
        """The submit is charged, then the connection drops: a client's retry charges twice."""
        self.inject_fault(path, status=None, drop=True, times=times)

    def refuse(self, code: str, path: str = "/rodin", times: int | None = 1,
               status: int = 201, message: str | None = None) -> None:
        """Refuse the next submissions with a documented code (no charge), e.g.
        ``refuse("API_PARALLELISM_LIMIT_REACHED")`` or ``refuse("API_NO_ACTIVE_SUBSCRIPTION")``."""
        self.inject_fault(path, status=status, body=answers.refusal_body(code, message),
                          content_type="application/json", times=times)

    def throttle(self, path: str = "/status", retry_after: float = 1.0,
                 times: int | None = 1) -> None:
        """Answer 429 with ``Retry-After`` (polling too often), without doing the request."""
        throttled = answers.throttled(retry_after)
        self.inject_fault(path, status=429, body=throttled.body, content_type="application/json",
                          headers=throttled.headers, times=times)

    def fail_jobs(self, times: int = 1, job: int | None = None, outcome: str = FAILED) -> None:
        """The next ``times`` tasks end with job ``job`` (None: every job) Failed or Canceled;
        they are still charged, as on the service."""
        self._plan.add_job_fault(job, outcome, times)

    def expire_download_urls(self) -> None:
        """Every download URL handed out so far answers 403, as after ``url_ttl``."""
        self._links.expire_all()

    def clear_faults(self) -> None:
        self._plan.clear()

    # ----- one request --------------------------------------------------------------------

    def serve(self, incoming: Incoming) -> Response | None:
        """The answer to one request, faults applied; None means hang up without answering."""
        method, raw_path = incoming.method, incoming.path
        is_api = raw_path == API_PREFIX or raw_path.startswith(API_PREFIX + "/")
        path = normalize_path(raw_path)
        authorized = self._is_authorized(incoming.authorization)
        at = time.time()
        if incoming.body is None:
            response = answers.refusal(incoming.body_status, answers.INVALID_REQUEST,
                                       "could not read the request body")
            self._log.record(method, path, response.status, authorized, at)
            return response
        refused = self._service.gate(method, path, is_api, authorized)
        # Faults take only requests that reach an endpoint: a bad key or a stray path
        # must not use up the fault a test set for the real call.
        fault = self._plan.take(path) if refused is None else None
        if fault is not None and fault.status is not None:
            # Recorded before the delay so tests see it even when the client timed out.
            self._log.record(method, path, 0 if fault.drop else fault.status, authorized, at)
            if self._pause(fault.delay) or fault.drop:  # stop() hangs up mid-delay
                return None
            return Response(fault.status, fault.body, fault.content_type, dict(fault.headers))
        try:
            response = refused if refused is not None else self._service.handle(
                path, is_api, incoming.content_type, incoming.body)
        except Exception:
            logger.debug("sandbox handler failed", exc_info=True)
            response = answers.refusal(500, "API_UNKNOWN", "sandbox internal error")
        dropped = fault is not None and fault.drop
        self._log.record(method, path, 0 if dropped else response.status, authorized, at)
        # status=None faults: the real answer ran (and may have charged); now delay / drop.
        if fault is not None and (self._pause(fault.delay) or dropped):
            return None
        return response

    def _is_authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self._api_key.encode())

    def _pause(self, seconds: float) -> bool:
        """Sleep, but wake at once when stop() is called; True means stopping (hang up)."""
        if seconds > 0:
            return self._stop_event.wait(seconds)
        return self._stop_event.is_set()
