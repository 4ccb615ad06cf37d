"""The sandbox's HTTP shell: a threading server bound to loopback, and a thin handler.

The handler reads the body and hands the request to :meth:`Sandbox.serve`; it only sends
what comes back, or hangs up when the answer is None (a dropped connection).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from .answers import Response
from .routes import ROUTES

if TYPE_CHECKING:
    from .server import Sandbox

API_PREFIX = "/api/v2"
MAX_BODY_BYTES = 64 * 1024 * 1024

logger = logging.getLogger("rodin_jupyter.sandbox")


class BodyTooLarge(Exception):
    """The request body is over MAX_BODY_BYTES."""


@dataclass(frozen=True)
class Incoming:
    """One request as the sandbox sees it; ``body`` None when it could not be read."""

    method: str
    path: str
    authorization: str | None
    content_type: str | None
    body: bytes | None
    body_status: int = 400


def normalize_path(path: str) -> str:
    """Strip the API prefix and a trailing slash so '/api/v2/rodin/' and '/rodin' match."""
    if path == API_PREFIX or path.startswith(API_PREFIX + "/"):
        path = path[len(API_PREFIX) :] or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path


def path_for_log(path: str) -> str:
    """A path safe to log: no query string, and only the documented endpoints by name
    (any other path could be something a caller pasted, a key included)."""
    bare = urlsplit(path).path
    short = normalize_path(bare)
    if short.startswith("/files/"):
        return "/files/..."  # the token in a download link is not for logs either
    return bare if short in ROUTES else "(unknown path)"


def loopback_bind_address(host: str) -> str:
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


class SandboxHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so stop() can close and join them."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], sandbox: Sandbox, ipv6: bool) -> None:
        self.address_family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self.sandbox = sandbox
        self._conn_lock = threading.Lock()
        self._conns: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, SandboxHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._run_request, args=(request, client_address),
                                  name="rodin-sandbox-conn", daemon=True)
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


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "RodinSandbox/1"
    sys_version = ""
    timeout = 30  # idle keep-alive connections do not live forever
    disable_nagle_algorithm = True  # headers and body go in separate writes: no 40 ms stall

    def log_message(self, format: str, *args: Any) -> None:
        """Never write to stderr, and never log the request line: a caller may have put the
        key in its query string (``?key=...``), and error messages quote that line. DEBUG
        gets the method, the path (see :func:`path_for_log`) and the status."""
        status = args[0] if args and isinstance(args[0], int) else "-"
        path = getattr(self, "path", None)
        logger.debug("sandbox: %s %s -> %s", getattr(self, "command", None) or "-",
                     path_for_log(path if isinstance(path, str) else ""), status)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.log_message("%s", code if isinstance(code, int) else "-")

    def log_error(self, format: str, *args: Any) -> None:
        """Nothing: ``send_error``'s message may quote the request line, and the
        ``log_request`` that follows it logs the status anyway."""

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
                    raise BodyTooLarge
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY_BYTES:
            raise BodyTooLarge
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        body: bytes | None = None
        body_status = 400
        try:
            body = self._read_body()
        except BodyTooLarge:
            body_status = 413
        except ValueError:
            body_status = 400
        if body is None:
            self.close_connection = True
        incoming = Incoming(self.command, urlsplit(self.path).path,
                            self.headers.get("Authorization"), self.headers.get("Content-Type"),
                            body, body_status)
        response = cast(SandboxHTTPServer, self.server).sandbox.serve(incoming)
        if response is None:
            self.close_connection = True
            return
        self._send(response)

    def _send(self, response: Response) -> None:
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

