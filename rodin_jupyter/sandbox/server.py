"""A local, Rodin-compatible HTTP server with a credit ledger and fault injection.

Demos, notebooks and tests point the client at it instead of the paid service: no real key,
no network, and every charge is recorded so tests can prove nothing was billed twice.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, cast
from urllib.parse import urlsplit

from rodin_jupyter.guard.pricing import PriceTable, load_prices

from .forms import ParsedBody, parse_body
from .glb import triangle_glb
from .ledger import (
    ChargeRecord,
    Ledger,
    SandboxRequestError,
    credits_json,
    sandbox_price,
)

SANDBOX_KEY = "sandbox-key-not-a-real-secret"
API_PREFIX = "/api/v2"
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_IMAGES = 5
INSUFFICIENT_FUNDS_MESSAGE = "The fund in your wallet is insufficient."

logger = logging.getLogger("rodin_jupyter.sandbox")


@dataclass(frozen=True)
class RequestRecord:
    """What the sandbox saw; deliberately without headers, so the key is never stored.

    ``path`` is relative to ``/api/v2`` for API calls (``"/rodin"``) and the raw path
    otherwise (``"/files/<task>/model.glb"``); ``status`` is 0 when no answer was sent.
    """

    method: str
    path: str
    status: int
    at: float
    authorized: bool


@dataclass
class _Fault:
    path: str | None
    status: int | None
    body: bytes
    content_type: str
    delay: float
    times: int | None
    headers: dict[str, str]
    drop: bool


@dataclass
class _Task:
    task_uuid: str
    subscription_key: str
    job_uuids: list[str]
    endpoint: str
    created: float  # time.monotonic()


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def _json(status: int, payload: Mapping[str, Any]) -> _Response:
    return _Response(status, json.dumps(payload).encode("utf-8"))


def _error(status: int, code: str, message: str) -> _Response:
    return _json(status, {"error": code, "message": message})


def _normalize_path(path: str) -> str:
    """Strip the API prefix and a trailing slash so '/api/v2/rodin/' and '/rodin' match."""
    if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
        path = path[len(API_PREFIX) :] or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


def _loopback_bind_address(host: str) -> str:
    """Refuse anything but loopback: the sandbox accepts a published fake key."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError as exc:
        raise ValueError(f"Sandbox binds to loopback only; {host!r} is not an IP address") from exc
    if not address.is_loopback:
        raise ValueError(f"Sandbox binds to loopback only; {host!r} is not a loopback address")
    return str(address)


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so stop() can close and join them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: Sandbox, ipv6: bool) -> None:
        self.address_family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self.sandbox = sandbox
        self._conn_lock = threading.Lock()
        self._conns: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._run_request,
            args=(request, client_address),
            name="rodin-sandbox-conn",
            daemon=True,
        )
        with self._conn_lock:
            self._conns[thread] = cast(socket.socket, request)
        thread.start()

    def _run_request(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._conns.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """No tracebacks on stderr; disconnects are silent, other errors go to DEBUG."""
        logger.debug("sandbox connection error", exc_info=True)

    def close_connections(self, timeout: float) -> None:
        """Hang up on keep-alive and delayed connections, then wait for their threads."""
        with self._conn_lock:
            conns = list(self._conns.items())
        for _, sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread, _ in conns:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "RodinSandbox/1"
    sys_version = ""
    timeout = 30  # idle keep-alive connections do not live forever
    disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms stall

    def log_message(self, format: str, *args: Any) -> None:
        """Never write to stderr; the request line holds no key, so DEBUG logging is safe."""
        logger.debug("sandbox: " + format, *args)

    @property
    def _sandbox(self) -> Sandbox:
        return cast(_Server, self.server).sandbox

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                size_line = self.rfile.readline(1024)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise SandboxRequestError(413, "API_INVALID_REQUEST", "body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY_BYTES:
            raise SandboxRequestError(413, "API_INVALID_REQUEST", "body too large")
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        sandbox = self._sandbox
        method = self.command
        raw_path = urlsplit(self.path).path
        is_api = raw_path == API_PREFIX or raw_path.startswith(API_PREFIX + "/")
        path = _normalize_path(raw_path)
        authorized = sandbox._is_authorized(self.headers.get("Authorization"))
        at = time.time()
        try:
            body = self._read_body()
        except (SandboxRequestError, ValueError) as exc:
            self.close_connection = True
            status = exc.status if isinstance(exc, SandboxRequestError) else 400
            response = _error(status, "API_INVALID_REQUEST", "could not read the request body")
            sandbox._record(method, path, response.status, authorized, at)
            self._send(response)
            return

        fault = sandbox._take_fault(path)
        if fault is not None and fault.status is not None:
            # Recorded before the delay so tests see it even when the client timed out.
            sandbox._record(method, path, 0 if fault.drop else fault.status, authorized, at)
            if sandbox._pause(fault.delay) or fault.drop:  # stop() hangs up mid-delay
                self.close_connection = True
                return
            self._send(_Response(fault.status, fault.body, fault.content_type, dict(fault.headers)))
            return

        try:
            response = sandbox._answer(
                method, path, is_api, authorized, self.headers.get("Content-Type"), body
            )
        except Exception:
            logger.debug("sandbox handler failed", exc_info=True)
            response = _error(500, "UNKNOWN", "sandbox internal error")
        dropped = fault is not None and fault.drop
        sandbox._record(method, path, 0 if dropped else response.status, authorized, at)
        # status=None faults: the real answer ran (and may have charged); now delay / drop.
        if fault is not None and (sandbox._pause(fault.delay) or dropped):
            self.close_connection = True
            return
        self._send(response)

    def _send(self, response: _Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        self.wfile.flush()


class Sandbox:
    """Local Rodin API stand-in: ``with Sandbox() as sb: client(base_url=sb.base_url, ...)``."""

    _ROUTES: ClassVar[Mapping[str, str]] = {
        "/check_balance": "GET",
        "/rodin": "POST",
        "/rodin_texture_only": "POST",
        "/bang": "POST",
        "/status": "POST",
        "/download": "POST",
    }

    def __init__(
        self,
        balance: str | int | float | Decimal = "10",
        api_key: str = SANDBOX_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        job_seconds: float = 0.6,
        prices: PriceTable | Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key or any(c.isspace() for c in api_key):
            raise ValueError("api_key must be a non-empty string without whitespace")
        if job_seconds < 0:
            raise ValueError("job_seconds must be >= 0")
        self._bind_host = _loopback_bind_address(host)
        self._port = int(port)
        self._api_key = api_key
        self.job_seconds = float(job_seconds)
        self._ledger = Ledger(balance)
        self.prices = prices if isinstance(prices, PriceTable) else load_prices(prices)
        self._lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._faults: list[_Fault] = []
        self._tasks: dict[str, _Task] = {}
        self._by_subscription: dict[str, _Task] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()

    # ----- lifecycle -------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Bind and serve in a daemon thread; returns once the socket is listening."""
        if self._server is not None:
            raise RuntimeError("Sandbox is already running")
        ipv6 = ":" in self._bind_host
        server = _Server((self._bind_host, self._port), self, ipv6)
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
        return self._ledger.balance

    def set_balance(self, balance: str | int | float | Decimal) -> None:
        self._ledger.set_balance(balance)

    @property
    def charges(self) -> list[ChargeRecord]:
        return self._ledger.charges

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """Number of recorded requests matching method and path (None matches any)."""
        wanted = None if path is None else _normalize_path(path)
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (wanted is None or r.path == wanted)
        )

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

        ``path`` None matches any path; ``times`` None lasts until clear_faults(). Faulted
        requests are recorded and never charge. Extension: ``status=None`` lets the real
        handler run (and charge) and then applies only ``delay``/``drop`` -- the
        "charged, but the answer never arrived" case a safe client must survive.
        """
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        if delay < 0:
            raise ValueError("delay must be >= 0")
        fault = _Fault(
            path=None if path is None else _normalize_path(path),
            status=status,
            body=body.encode("utf-8") if isinstance(body, str) else bytes(body),
            content_type=content_type,
            delay=float(delay),
            times=times,
            headers=dict(headers or {}),
            drop=drop,
        )
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    # ----- internals used by the handler ------------------------------------------------

    def _is_authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self._api_key.encode())

    def _record(self, method: str, path: str, status: int, authorized: bool, at: float) -> None:
        """Called before the answer is written, so a client never sees an unrecorded reply.

        Keeps method, path and status only; headers (and so the key) are never stored.
        """
        with self._lock:
            self._requests.append(RequestRecord(method, path, status, at, authorized))
        logger.debug("sandbox %s %s -> %s", method, path, status)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.path is None or fault.path == path:
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            del self._faults[i]
                    return fault
        return None

    def _pause(self, seconds: float) -> bool:
        """Sleep, but wake at once when stop() is called; True means stopping (hang up)."""
        if seconds > 0:
            return self._stop_event.wait(seconds)
        return self._stop_event.is_set()

    def _status_of(self, task: _Task) -> str:
        elapsed = time.monotonic() - task.created
        if elapsed >= self.job_seconds:
            return "Done"
        if elapsed >= self.job_seconds / 3:
            return "Generating"
        return "Waiting"

    def _answer(
        self,
        method: str,
        path: str,
        is_api: bool,
        authorized: bool,
        content_type: str | None,
        body: bytes,
    ) -> _Response:
        if not is_api:
            if method == "GET" and path.startswith("/files/"):
                return self._serve_file(path)
            return _error(404, "NOT_FOUND", f"No such path: {path[:80]}")
        if not authorized:
            return _Response(
                401,
                json.dumps({"error": "Not authenticated"}).encode(),
                headers={"WWW-Authenticate": "Bearer"},
            )
        expected = self._ROUTES.get(path)
        if expected is None:
            return _error(404, "NOT_FOUND", f"No such endpoint: {path[:80]}")
        if method != expected:
            return _Response(
                405,
                json.dumps({"error": "METHOD_NOT_ALLOWED", "message": f"use {expected}"}).encode(),
                headers={"Allow": expected},
            )
        if path == "/check_balance":
            return _json(200, {"balance": credits_json(self._ledger.balance)})
        try:
            parsed = parse_body(content_type, body)
            if path in ("/rodin", "/rodin_texture_only", "/bang"):
                return self._generate(path, parsed)
            if path == "/status":
                return self._status(parsed)
            return self._download(parsed)
        except SandboxRequestError as exc:
            return _error(exc.status, exc.code, exc.message)

    def _generate(self, endpoint: str, parsed: ParsedBody) -> _Response:
        images = parsed.files.get("images", [])
        if len(images) > MAX_IMAGES:
            raise SandboxRequestError(
                400, "API_INVALID_REQUEST", f"at most {MAX_IMAGES} images are allowed"
            )
        if endpoint == "/rodin" and not images and not _text(parsed, "prompt"):
            raise SandboxRequestError(
                400, "API_INVALID_REQUEST", "either a prompt or images are required"
            )
        price = sandbox_price(endpoint, parsed.fields, self.prices)
        task_uuid = str(uuid.uuid4())
        if self._ledger.try_charge(task_uuid, endpoint, price) is None:
            return _json(
                201,
                {
                    "error": "API_INSUFFICIENT_FUNDS",
                    "message": INSUFFICIENT_FUNDS_MESSAGE,
                    "uuid": None,
                    "jobs": None,
                },
            )
        task = _Task(
            task_uuid=task_uuid,
            subscription_key=uuid.uuid4().hex,
            job_uuids=[str(uuid.uuid4())],
            endpoint=endpoint,
            created=time.monotonic(),
        )
        with self._lock:
            self._tasks[task.task_uuid] = task
            self._by_subscription[task.subscription_key] = task
        return _json(
            201,
            {
                "error": None,
                "message": "Submitted.",
                "uuid": task.task_uuid,
                "jobs": {"uuids": list(task.job_uuids), "subscription_key": task.subscription_key},
                "consumed": credits_json(price),
            },
        )

    def _status(self, parsed: ParsedBody) -> _Response:
        key = _text(parsed, "subscription_key")
        if not key:
            raise SandboxRequestError(400, "API_INVALID_REQUEST", "subscription_key is required")
        with self._lock:
            task = self._by_subscription.get(key)
        if task is None:
            return _json(
                404,
                {"error": "API_TASK_NOT_FOUND", "message": "Unknown subscription_key", "jobs": []},
            )
        status = self._status_of(task)
        return _json(
            200, {"error": None, "jobs": [{"uuid": j, "status": status} for j in task.job_uuids]}
        )

    def _download(self, parsed: ParsedBody) -> _Response:
        task_uuid = _text(parsed, "task_uuid")
        if not task_uuid:
            raise SandboxRequestError(400, "API_INVALID_REQUEST", "task_uuid is required")
        with self._lock:
            task = self._tasks.get(task_uuid)
        if task is None:
            return _json(
                404, {"error": "API_TASK_NOT_FOUND", "message": "Unknown task_uuid", "list": []}
            )
        if self._status_of(task) != "Done":
            return _json(
                200, {"error": "API_TASK_NOT_DONE", "message": "Task is not done yet", "list": []}
            )
        url = f"{self.origin}/files/{task.task_uuid}/model.glb"
        return _json(200, {"error": None, "list": [{"url": url, "name": "model.glb"}]})

    def _serve_file(self, path: str) -> _Response:
        parts = path.split("/")  # ["", "files", task, "model.glb"]
        if len(parts) == 4 and parts[3] == "model.glb":
            with self._lock:
                task = self._tasks.get(parts[2])
            if task is not None and self._status_of(task) == "Done":
                return _Response(200, triangle_glb(), "model/gltf-binary")
        return _error(404, "NOT_FOUND", "No such file")


def _text(parsed: ParsedBody, name: str) -> str:
    values = parsed.fields.get(name)
    if not values or not isinstance(values[0], str):
        return ""
    return values[0].strip()
