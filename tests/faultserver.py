"""A small misbehaving HTTP(S) server for tests, and the fault matrix every surface faces.

:class:`FaultServer` binds a loopback address (``127.0.0.1``, or ``127.0.0.2`` when a test
needs a second host) and answers exactly as told by a :class:`Reply`: any status, headers
and body, a body with or without ``Content-Length`` or chunked, a connection dropped before
the answer, an answer that never comes, an answer that trickles in byte by byte, or raw
bytes that are not HTTP at all. With :func:`make_tls` it serves TLS with a certificate from
a throwaway CA generated at test time by the ``openssl`` command.

It records, for every request, the method, the path and *whether* an ``Authorization``
header arrived, never the header's value: the server itself cannot leak the key.

:data:`FAULTS` is the matrix of issue 5. Each :class:`Fault` knows how to set up the
server(s) and what the client must raise, with a message fragment that says what happened.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import shutil
import socket
import socketserver
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Literal

from rodin_jupyter.errors import (
    BadResponseError,
    KeyRefusedError,
    RateLimitedError,
    RodinError,
    RodinNetworkError,
    RodinTimeoutError,
    ServiceError,
)

Mode = Literal["answer", "drop", "reset", "hang", "trickle_headers", "trickle_body", "raw"]
TEN_MB = 10 * 1024 * 1024
SECOND_HOST = "127.0.0.2"


@dataclass(frozen=True)
class Reply:
    """How to answer one request.

    ``framing``: ``"length"`` sends ``Content-Length``, ``"close"`` ends the body by closing
    the connection, ``"chunked"`` uses chunked transfer encoding (64 KiB chunks).
    ``mode``: ``"answer"`` answers; ``"drop"`` closes without a byte; ``"reset"`` closes
    with a TCP reset; ``"hang"`` never answers (until the server stops); ``"trickle_*"``
    sends the headers or the body one byte every ``interval`` seconds; ``"raw"`` writes
    ``body`` as-is, with no status line or headers of our making.
    """

    status: int = 200
    body: bytes = b'{"balance": 10}'
    headers: Sequence[tuple[str, str]] = ()
    content_type: str | None = "application/json"
    framing: Literal["length", "close", "chunked"] = "length"
    mode: Mode = "answer"
    interval: float = 0.5

    def head(self) -> bytes:
        try:
            reason = HTTPStatus(self.status).phrase
        except ValueError:
            reason = "Whatever"
        lines = [f"HTTP/1.1 {self.status} {reason}"]
        names = {name.lower() for name, _ in self.headers}
        if self.content_type is not None and "content-type" not in names:
            lines.append(f"Content-Type: {self.content_type}")
        if self.framing == "length" and "content-length" not in names:
            lines.append(f"Content-Length: {len(self.body)}")
        elif self.framing == "chunked":
            lines.append("Transfer-Encoding: chunked")
        lines += [f"{name}: {value}" for name, value in self.headers]
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def framed_body(self) -> Iterator[bytes]:
        if self.framing != "chunked":
            yield self.body
            return
        step = 64 * 1024
        for i in range(0, len(self.body), step):
            piece = self.body[i:i + step]
            yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
        yield b"0\r\n\r\n"


def json_reply(body: str | bytes, status: int = 200, **kwargs: object) -> Reply:
    raw = body.encode() if isinstance(body, str) else body
    return Reply(status=status, body=raw, **kwargs)  # type: ignore[arg-type]


def html_reply(status: int, text: str = "<!doctype html><h1>Oops</h1>") -> Reply:
    return Reply(status=status, body=text.encode(), content_type="text/html; charset=utf-8")


@dataclass(frozen=True)
class Hit:
    """One request the server saw: never the header values, only whether auth came."""

    method: str
    path: str
    authorization: bool
    at: float


class _Handler(socketserver.BaseRequestHandler):
    server: _TCPServer

    def handle(self) -> None:
        owner = self.server.owner
        sock: socket.socket = self.request
        sock.settimeout(10)
        try:
            method, path, authorized = _read_request(sock)
        except (OSError, ValueError):
            return
        reply = owner._record_and_pick(Hit(method, path, authorized, time.monotonic()))
        with contextlib.suppress(OSError):  # the client hung up first: that is its right
            owner._answer(sock, reply)


def _read_request(sock: socket.socket) -> tuple[str, str, bool]:
    """Read the request line and headers (and a Content-Length body) from the socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ValueError("client closed before a full request")
        data += chunk
        if len(data) > 1024 * 1024:
            raise ValueError("request head too large")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = [*lines[0].split(" ", 2), "", ""][:3]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return method, path, bool(headers.get("authorization"))


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], owner: FaultServer) -> None:
        self.owner = owner
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket | tuple[bytes, socket.socket],
                        client_address: object) -> None:
        thread = threading.Thread(target=self._run, args=(request, client_address),
                                  name="faultserver-conn", daemon=True)
        with self.owner._lock:
            self.owner._conns[thread] = request  # type: ignore[assignment]
        thread.start()

    def _run(self, request: socket.socket, client_address: object) -> None:
        try:
            if self.owner.tls is not None:
                try:
                    request = self.owner._context().wrap_socket(request, server_side=True)
                except (OSError, ssl.SSLError):
                    self.owner.tls_failures += 1
                    return
            self.finish_request(request, client_address)
        finally:
            with contextlib.suppress(OSError):
                request.close()
            with self.owner._lock:
                self.owner._conns.pop(threading.current_thread(), None)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # no tracebacks on stderr from a server that misbehaves on purpose


@dataclass(frozen=True)
class TLSFiles:
    """A throwaway CA and a server certificate it signed (for 127.0.0.1 and localhost)."""

    ca: Path
    cert: Path
    key: Path


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


def make_tls(directory: Path) -> TLSFiles:
    """Make a CA and a server certificate with the ``openssl`` command (about 0.1 s)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed to make test certificates")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key = directory / "ca.key", directory / "ca.pem", directory / "server.key"
    csr, cert, ext = directory / "server.csr", directory / "server.pem", directory / "ext.cnf"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca), "-days", "2",
        "-subj", "/CN=rodin-jupyter test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "basicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\n"
                   "subjectKeyIdentifier=hash\n"
                   "authorityKeyIdentifier=keyid\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return TLSFiles(ca=ca, cert=cert, key=key)


class FaultServer:
    """``with FaultServer() as fs: fs.set(Reply(...)); RodinClient(KEY, fs.base_url)``."""

    def __init__(self, host: str = "127.0.0.1", tls: TLSFiles | None = None) -> None:
        self.host = host
        self.tls = tls
        self.tls_failures = 0
        self._lock = threading.Lock()
        self._replies: list[Reply] = [Reply()]
        self._hits: list[Hit] = []
        self._conns: dict[threading.Thread, socket.socket] = {}
        self._stop = threading.Event()
        self._server: _TCPServer | None = None
        self._thread: threading.Thread | None = None
        self._ssl: ssl.SSLContext | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> FaultServer:
        self._server = _TCPServer((self.host, 0), self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="faultserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stop.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._conns.items())
        for _, sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 5
        for thread, _ in conns:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the server first"
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + "/api/v2"

    @property
    def netloc(self) -> str:
        return f"{self.host}:{self.port}"

    # -- behaviour ---------------------------------------------------------------------

    def set(self, *replies: Reply) -> None:
        """Answer with these in turn; the last one repeats."""
        assert replies
        with self._lock:
            self._replies = list(replies)

    def prepend(self, reply: Reply) -> None:
        """Answer the next request with ``reply``, then go on as before."""
        with self._lock:
            self._replies.insert(0, reply)

    @property
    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    def count(self, path_suffix: str = "") -> int:
        return sum(1 for h in self.hits if h.path.endswith(path_suffix))

    def _record_and_pick(self, hit: Hit) -> Reply:
        with self._lock:
            self._hits.append(hit)
            return self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            assert self.tls is not None
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(self.tls.cert), str(self.tls.key))
            self._ssl = context
        return self._ssl

    def _answer(self, sock: socket.socket, reply: Reply) -> None:
        stop = self._stop
        if reply.mode == "drop":
            return
        if reply.mode == "reset":
            linger = struct.pack("ii", 1, 0)  # close with RST, not FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            return
        if reply.mode == "hang":
            stop.wait(120)
            return
        if reply.mode == "raw":
            sock.sendall(reply.body)
            return
        head = reply.head()
        if reply.mode == "trickle_headers":
            for i in range(len(head)):
                sock.sendall(head[i:i + 1])
                if stop.wait(reply.interval):
                    return
            head = b""
        sock.sendall(head)
        for piece in reply.framed_body():
            if reply.mode == "trickle_body":
                for i in range(len(piece)):
                    sock.sendall(piece[i:i + 1])
                    if stop.wait(reply.interval):
                        return
            else:
                sock.sendall(piece)


# -- the fault matrix ------------------------------------------------------------------

Setup = Callable[[FaultServer, FaultServer], None]


@dataclass(frozen=True)
class Fault:
    """One cell row of the matrix: how to misbehave and what a client must say about it."""

    id: str
    setup: Setup
    error: type[RodinError]
    says: str
    """A fragment the message must contain: what happened, or what to do."""
    tls: bool = False
    slow: bool = False
    """Only a timeout or the deadline ends it (the tests then use short ones)."""
    attempts: int | None = 1
    """Requests the server sees with the default retries (None: depends on timing)."""


def _replies(*replies: Reply) -> Setup:
    def setup(server: FaultServer, other: FaultServer) -> None:
        server.set(*replies)
    return setup


def _redirect(status: int) -> Setup:
    def setup(server: FaultServer, other: FaultServer) -> None:
        other.set(Reply(body=b'{"balance": 999}'))
        server.set(Reply(status=status, body=b"", headers=[
            ("Location", f"{other.base_url}/check_balance")]))
    return setup


def _gzip_bomb() -> Reply:
    return Reply(body=gzip.compress(b" " * TEN_MB), headers=[("Content-Encoding", "gzip")])


FAULTS: tuple[Fault, ...] = (
    Fault("401", _replies(json_reply('{"error": "Not authenticated"}', 401)),
          KeyRefusedError, "refused (HTTP 401)"),
    Fault("401-documented", _replies(json_reply(
          '{"error": "UNAUTHORIZED", "message": "Active API key is required."}', 401)),
          KeyRefusedError, "refused (HTTP 401)"),
    Fault("403", _replies(html_reply(403, "<h1>Forbidden</h1>")),
          KeyRefusedError, "refused (HTTP 403)"),
    Fault("404-html", _replies(html_reply(404, "<html><body>Not Found</body></html>")),
          ServiceError, "check RODIN_API_BASE"),
    Fault("429-retry-after", _replies(Reply(status=429, body=b"slow down", headers=[
          ("Retry-After", "120")])), RateLimitedError, "retry after 120 s"),
    Fault("429-no-retry-after", _replies(Reply(status=429, body=b"")),
          RateLimitedError, "wait a minute", attempts=3),
    Fault("500-html", _replies(html_reply(500, "<html><pre>Traceback ...</pre></html>")),
          ServiceError, "internal error (HTTP 500)"),
    Fault("502", _replies(html_reply(502, "<h1>Bad Gateway</h1>")),
          ServiceError, "unavailable (HTTP 502)", attempts=3),
    Fault("503", _replies(Reply(status=503, body=b"")), ServiceError, "unavailable (HTTP 503)",
          attempts=3),
    Fault("504", _replies(html_reply(504, "<h1>Gateway Timeout</h1>")),
          ServiceError, "unavailable (HTTP 504)", attempts=3),
    Fault("broken-json", _replies(json_reply('{"balance": 1')), BadResponseError,
          "not valid JSON"),
    Fault("json-array", _replies(json_reply("[10]")), BadResponseError, "not a JSON object"),
    Fault("no-balance", _replies(json_reply('{"credits": 10}')), BadResponseError,
          "no 'balance' field"),
    Fault("balance-null", _replies(json_reply('{"balance": null}')), BadResponseError,
          "null, not a number"),
    Fault("balance-string", _replies(json_reply('{"balance": "10"}')), BadResponseError,
          "a string, not a number"),
    Fault("balance-bool", _replies(json_reply('{"balance": true}')), BadResponseError,
          "a boolean, not a number"),
    Fault("balance-nan", _replies(json_reply('{"balance": NaN}')), BadResponseError,
          "not a number"),
    Fault("balance-infinity", _replies(json_reply('{"balance": Infinity}')), BadResponseError,
          "not a number"),
    Fault("balance-negative", _replies(json_reply('{"balance": -3.5}')), BadResponseError,
          "negative balance"),
    Fault("balance-too-large-for-float", _replies(json_reply('{"balance": 1e400}')),
          BadResponseError, "implausibly large"),
    Fault("balance-huge-integer", _replies(json_reply('{"balance": ' + "9" * 400 + "}")),
          BadResponseError, "implausibly large"),
    Fault("10mb-body", _replies(Reply(body=b" " * TEN_MB)), BadResponseError, "far too large"),
    Fault("10mb-body-no-length", _replies(Reply(body=b" " * TEN_MB, framing="close")),
          BadResponseError, "far too large"),
    Fault("10mb-body-chunked", _replies(Reply(body=b" " * TEN_MB, framing="chunked")),
          BadResponseError, "far too large"),
    Fault("gzip-bomb", _replies(_gzip_bomb()), BadResponseError, "far too large"),
    Fault("dropped", _replies(Reply(mode="drop")), RodinNetworkError, "Could not reach",
          attempts=3),
    Fault("reset", _replies(Reply(mode="reset")), RodinNetworkError, "Could not reach",
          attempts=3),
    Fault("never-answers", _replies(Reply(mode="hang")), RodinTimeoutError,
          "did not answer in time", slow=True, attempts=None),
    Fault("trickled-headers", _replies(Reply(mode="trickle_headers", interval=0.2)),
          RodinTimeoutError, "did not answer in time", slow=True),
    Fault("trickled-body", _replies(Reply(body=b'{"balance": 10}' + b" " * 200,
                                          mode="trickle_body", interval=0.2)),
          RodinTimeoutError, "did not answer in time", slow=True),
    Fault("redirect-302-other-host", _redirect(302), ServiceError, "not followed"),
    Fault("redirect-307-other-host", _redirect(307), ServiceError, "not followed"),
    Fault("tls-unverified", _replies(Reply()), RodinNetworkError,
          "could not be verified", tls=True, attempts=0),
)

FAULT_IDS = [f.id for f in FAULTS]


@contextlib.contextmanager
def fault_servers(fault: Fault, tls: TLSFiles | None = None
                  ) -> Iterator[tuple[FaultServer, FaultServer]]:
    """The main server (TLS if the fault needs it) and a second host, set up for ``fault``."""
    other_host = SECOND_HOST if second_host_available() else "127.0.0.1"
    with FaultServer(tls=tls if fault.tls else None) as server, \
            FaultServer(host=other_host) as other:
        fault.setup(server, other)
        yield server, other


def second_host_available() -> bool:
    """127.0.0.2 can be bound (Linux routes all of 127/8 to loopback; macOS does not)."""
    try:
        with socket.socket() as probe:
            probe.bind((SECOND_HOST, 0))
        return True
    except OSError:
        return False


@dataclass
class Timer:
    """``with Timer() as t: ...; t.elapsed``."""

    start: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0

    def __enter__(self) -> Timer:
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.monotonic() - self.start


NETWORK_VARIABLES = (
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy",
)
"""Variables that would change where requests go or which certificates are trusted."""

ACTION = re.compile(r"(?i)\b(check|try again|retry after|wait|set)\b")
"""Every message says what to do: check something, try again, wait, set a variable."""

MAX_MESSAGE_CHARS = 220


def message_problems(text: str, fault: Fault, key: str) -> list[str]:
    """Why ``text`` is not a good one-line message for ``fault`` (empty when it is)."""
    problems = []
    if fault.says not in text:
        problems.append(f"does not say {fault.says!r}")
    if not ACTION.search(text):
        problems.append("does not say what to do")
    if "\n" in text.strip() or len(text) > MAX_MESSAGE_CHARS:
        problems.append("is not one short line")
    if "Traceback" in text:
        problems.append("carries a traceback")
    if key in text:
        problems.append("carries the key")
    return problems


def client_defaults() -> dict[str, Any]:
    """``RodinClient``'s keyword defaults, to patch for in-process runs of the command line."""
    from rodin_jupyter import RodinClient

    defaults = RodinClient.__init__.__kwdefaults__
    assert defaults is not None
    return defaults


def env_for(base_url: str, key: str, base: Mapping[str, str],
            extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A subprocess environment: ``base`` less network variables, plus key and base URL."""
    env = {k: v for k, v in base.items() if k not in NETWORK_VARIABLES}
    return {**env, "RODIN_API_KEY": key, "RODIN_API_BASE": base_url, **(extra or {})}
