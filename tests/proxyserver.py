"""A tiny threaded HTTP proxy on loopback, for the proxy tests: it tunnels CONNECT and
forwards plain requests, and records what it saw (never a header's value, only which
header names arrived, and whether the key's bytes ever passed through it)."""

from __future__ import annotations

import contextlib
import select
import shutil
import socket
import socketserver
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .faultserver import TLSFiles

Behaviour = Literal["relay", "407"]


@dataclass
class Seen:
    """One request the proxy received."""

    method: str
    target: str
    header_names: frozenset[str]
    key_bytes_passed: bool = False


@dataclass
class ProxyServer:
    """``with ProxyServer(upstream=("127.0.0.1", port)) as proxy: proxy.url``.

    Every CONNECT is tunnelled to ``upstream`` whatever host it names: the test can use a
    foreign name (``rodin.test``) that nothing outside ever resolves.
    """

    upstream: tuple[str, int] | None = None
    host: str = "127.0.0.1"
    behaviour: Behaviour = "relay"
    secret: bytes = b""
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._handle(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server((self.host, 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ProxyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _handle(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        head = b""
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    return
                head += chunk
        lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        try:
            method, target, _ = lines[0].split(" ", 2)
        except ValueError:
            return
        names = frozenset(line.split(":", 1)[0].strip().lower() for line in lines[1:] if line)
        record = Seen(method, target, names,
                      key_bytes_passed=bool(self.secret) and self.secret in head)
        with self._lock:
            self.seen.append(record)
        if self.behaviour == "407":
            sock.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                         b"Proxy-Authenticate: Basic realm=\"test\"\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            return
        if self.upstream is None:
            sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        with socket.create_connection(self.upstream, timeout=10) as up:
            if method == "CONNECT":
                sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                rest = head.split(b"\r\n\r\n", 1)[1]
            else:  # a plain forward: pass the request on as it came
                rest = head
            if rest:
                up.sendall(rest)
            self._pipe(sock, up, record)

    def _pipe(self, client: socket.socket, up: socket.socket, record: Seen) -> None:
        peers = {client: up, up: client}
        with contextlib.suppress(OSError):
            while True:
                ready, _, _ = select.select(list(peers), [], [], 10)
                if not ready:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client and self.secret and self.secret in data:
                        record.key_bytes_passed = True
                    peers[sock].sendall(data)


def make_named_tls(directory: Path, name: str) -> TLSFiles:
    """Like :func:`make_tls`, for a certificate naming ``name`` (a host that never
    resolves outside: the proxy tests reach it through the proxy only)."""
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
        "-subj", "/CN=rodin-jupyter proxy test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    ext.write_text(f"subjectAltName=DNS:{name}\n"
                   "basicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\n"
                   "extendedKeyUsage=serverAuth\n"
                   "subjectKeyIdentifier=hash\n"
                   "authorityKeyIdentifier=keyid\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return TLSFiles(ca=ca, cert=cert, key=key)
