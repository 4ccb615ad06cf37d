"""A tiny threaded HTTPS server answering ``GET /api/v2/check_balance`` for the benchmarks.

Run as a separate process (so its TLS work does not share the client's GIL)::

    python benchmarks/https_server.py --cert cert.pem --key key.pem [--balance 10]

It prints ``PORT <n>`` once listening and serves until stdin closes. HTTP/1.1 with
keep-alive, TCP_NODELAY, one thread per connection, TLS handshake in that thread.

Besides the API it answers, on the same port and never counted:

* ``GET /__stats`` -> ``{"requests": n, "connections": n, "by_path": {...}}``
* ``GET /__set?balance=N`` -> sets the balance the API reports.

``make_certificate`` writes the self-signed certificate (openssl CLI, else the
``cryptography`` package).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

BALANCE_PATH = "/api/v2/check_balance"


class CertificateError(RuntimeError):
    """No way to make a self-signed certificate on this machine."""


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (subjectAltName IP) and its key."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    openssl = shutil.which("openssl")
    if openssl:
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
             "-keyout", str(key), "-out", str(cert)],
            check=True, capture_output=True,
        )
        return cert, key
    try:
        return _certificate_with_cryptography(cert, key)
    except ImportError:
        raise CertificateError(
            "Need the openssl command or the 'cryptography' package to make a test "
            "certificate (apt-get install openssl)."
        ) from None


def _certificate_with_cryptography(cert: Path, key: Path) -> tuple[Path, Path]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(private, hashes.SHA256())
    )
    key.write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key


class Server(ThreadingHTTPServer):
    """Wraps each accepted socket in TLS inside its own thread (handshakes run in parallel)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, context: ssl.SSLContext, balance: str) -> None:
        self.context = context
        self.balance = balance
        self.lock = threading.Lock()
        self.requests = Counter[str]()
        self.connections = 0  # TLS connections that carried at least one API request
        super().__init__(("127.0.0.1", 0), Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        super().finish_request(tls, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # disconnects are expected (the snippet drops each connection)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "BenchRodin/1"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 60
    counted = False  # one handler per connection: has this one carried an API request?

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        server: Server = self.server  # type: ignore[assignment]
        parts = urlsplit(self.path)
        if parts.path == "/__stats":
            with server.lock:
                stats = {"requests": sum(server.requests.values()),
                         "connections": server.connections, "by_path": dict(server.requests)}
            self._send(200, stats)
            return
        if parts.path == "/__set":
            value = parse_qs(parts.query).get("balance", [server.balance])[0]
            with server.lock:
                server.balance = value
            self._send(200, {"balance": value})
            return
        with server.lock:
            server.requests[parts.path] += 1
            balance = server.balance
            if not self.counted:
                self.counted = True
                server.connections += 1
        if parts.path.rstrip("/") != BALANCE_PATH:
            self._send(404, {"error": "NOT_FOUND"})
        elif not self.headers.get("Authorization", "").startswith("Bearer "):
            self._send(401, {"error": "NO_KEY"})
        else:
            self.send_response(200)
            body = b'{"balance": ' + balance.encode("ascii") + b"}"
            self._send_body(body)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        self.send_response(status)
        self._send_body(json.dumps(payload).encode("utf-8"))

    def _send_body(self, body: bytes) -> None:
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(cert: Path, key: Path, balance: str) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server = Server(context, balance)
    server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                              daemon=True)
    thread.start()
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()  # the parent closes our stdin to stop us
    server.shutdown()
    server.server_close()


class ServerProcess:
    """The server in a child process; ``with ServerProcess(cert, key) as server: ...``."""

    def __init__(self, cert: Path, key: Path, balance: str = "10") -> None:
        self.cert, self.key, self.initial_balance = cert, key, balance
        self.process: subprocess.Popen[str] | None = None
        self.port = 0
        self._context = ssl.create_default_context(cafile=str(cert))

    def __enter__(self) -> ServerProcess:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--cert", str(self.cert), "--key", str(self.key),
             "--balance", self.initial_balance],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("PORT "):
            self.process.kill()
            raise RuntimeError(f"benchmark HTTPS server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.process is None:
            return
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/api/v2"

    def _control(self, path: str) -> dict[str, Any]:
        import http.client

        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self._context,
                                           timeout=10)
        try:
            conn.request("GET", path)
            result: dict[str, Any] = json.loads(conn.getresponse().read())
            return result
        finally:
            conn.close()

    def stats(self) -> dict[str, Any]:
        """Counts so far: API requests (total and by path) and the connections they used."""
        return self._control("/__stats")

    def balance_requests(self) -> int:
        """How many ``GET /api/v2/check_balance`` the server has answered."""
        return int(self.stats()["by_path"].get(BALANCE_PATH, 0))

    def set_balance(self, balance: str) -> None:
        self._control(f"/__set?balance={balance}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--balance", default="10")
    args = parser.parse_args()
    serve(args.cert, args.key, args.balance)


if __name__ == "__main__":
    main()
