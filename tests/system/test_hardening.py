"""Issue 10, through the real stack: loopback servers, a real proxy process, real sockets.

The key goes to no one else (parsers that disagree, proxies), every check ends in time
(compressed and endless answers), and the messages say what to do.
"""

from __future__ import annotations

import gzip
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter import RodinClient, RodinError
from rodin_jupyter.errors import (
    BadResponseError,
    InsecureURLError,
    RodinNetworkError,
    ServiceError,
)
from rodin_jupyter.http import urls
from rodin_jupyter.http.key import ApiKey
from tests.conftest import FAKE_KEY, environ_without_keys
from tests.faultserver import (
    ACTION,
    NETWORK_VARIABLES,
    FaultServer,
    Reply,
    have_openssl,
    json_reply,
)
from tests.proxyserver import ProxyServer, make_named_tls

PROXY_VARIABLES = (*NETWORK_VARIABLES, "no_proxy", "NO_PROXY")
FOREIGN = "rodin.test"  # a name nothing may ever look up: the shim below refuses it


@pytest.fixture(autouse=True)
def hermetic_network(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A resolver shim: loopback names resolve, anything else fails without leaving the
    machine; returns the list of names asked for."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        asked.append(name)
        if name in ("localhost", "api.localhost") or urls.is_loopback_literal(name):
            return real("127.0.0.1" if name == "api.localhost" else name, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, "refused by the test's resolver shim")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as fault_server:
        fault_server.set(Reply(body=b'{"balance": 10}'))
        yield fault_server


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- 1. the host is the one the connecting parser sees ------------------------------------


def test_a_backslash_base_is_refused_before_any_lookup(server: FaultServer,
                                                       lookups: list[str]) -> None:
    base = f"http://evil.example\\.localhost:{server.port}/api/v2"
    with pytest.raises(InsecureURLError) as info:
        RodinClient(FAKE_KEY, base).check_balance()
    assert "backslash" in str(info.value)
    assert not any("evil" in name for name in lookups)
    assert server.hits == []


@pytest.mark.parametrize("base", [
    "http://127.0.0.1\t/api/v2", "http://127.0.0.1%2f@evil.example/api/v2",
    "http://evil.example#@127.0.0.1/api/v2", "http://127.0.0.1:80:80/api/v2",
    "http://127.1/api/v2", "http://0x7f.0.0.1/api/v2", "http://2130706433/api/v2",
    "http://[::ffff:8.8.8.8]/api/v2", "http://localhost./api/v2", "http://127.0.0.1\x00/x",
    "http://evil.example/.localhost", "http:/\\evil.example/api/v2", "http:evil.example/",
])
def test_odd_authorities_are_refused_in_one_line(base: str, lookups: list[str]) -> None:
    with pytest.raises(InsecureURLError) as info:
        RodinClient(FAKE_KEY, base)
    assert "\n" not in str(info.value) and FAKE_KEY not in str(info.value)
    assert lookups == []


def test_a_dot_localhost_name_that_resolves_to_loopback_only_is_used(
        server: FaultServer, lookups: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urls, "resolve_host", lambda host: ["127.0.0.1", "::1"])
    with RodinClient(FAKE_KEY, f"http://api.localhost:{server.port}/api/v2") as client:
        assert client.check_balance().balance == Decimal(10)
    assert server.count("/check_balance") == 1


@pytest.mark.parametrize("answer", [["127.0.0.1", "192.0.2.7"], [], OSError("no such name")])
def test_a_dot_localhost_name_off_loopback_is_refused(answer: Any, server: FaultServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def resolve(host: str) -> list[str]:
        if isinstance(answer, Exception):
            raise answer
        return list(answer)

    monkeypatch.setattr(urls, "resolve_host", resolve)
    with pytest.raises(InsecureURLError, match="https is required"):
        RodinClient(FAKE_KEY, f"http://api.localhost:{server.port}/api/v2")
    assert server.hits == []


# -- 2. proxies -----------------------------------------------------------------------------


@pytest.mark.parametrize("env", [
    {"HTTP_PROXY": "{proxy}"}, {"http_proxy": "{proxy}", "no_proxy": "localhost"},
    {"ALL_PROXY": "{proxy}"}, {"HTTPS_PROXY": "{proxy}", "HTTP_PROXY": "{proxy}"},
], ids=["HTTP_PROXY", "no_proxy-localhost", "ALL_PROXY", "both"])
def test_a_loopback_base_never_goes_through_a_proxy(env: dict[str, str], server: FaultServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with ProxyServer(upstream=("127.0.0.1", server.port), secret=FAKE_KEY.encode()) as proxy:
        for name, value in env.items():
            monkeypatch.setenv(name, value.format(proxy=proxy.url))
        with RodinClient(FAKE_KEY, server.base_url) as client:
            assert client.check_balance().balance == Decimal(10)
        assert proxy.seen == []
    assert server.hits and server.hits[0].authorization


@pytest.fixture(scope="module")
def foreign_tls(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not have_openssl():
        pytest.skip("needs the openssl command")
    return make_named_tls(tmp_path_factory.mktemp("proxy-tls"), FOREIGN)


def test_an_https_base_goes_through_the_proxy_as_a_tunnel(
        foreign_tls: Any, lookups: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with FaultServer(tls=foreign_tls) as origin:
        origin.set(Reply(body=b'{"balance": 7}'))
        with ProxyServer(upstream=("127.0.0.1", origin.port), secret=FAKE_KEY.encode()) as proxy:
            monkeypatch.setenv("HTTPS_PROXY", proxy.url)
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(foreign_tls.ca))
            with RodinClient(FAKE_KEY, f"https://{FOREIGN}:{origin.port}/api/v2") as client:
                assert client.check_balance().balance == Decimal(7)
            assert [(s.method, s.target) for s in proxy.seen] == [
                ("CONNECT", f"{FOREIGN}:{origin.port}")]
            assert "authorization" not in proxy.seen[0].header_names
            assert not proxy.seen[0].key_bytes_passed
    assert origin.hits[0].authorization  # the key arrived, inside the tunnel
    assert FOREIGN not in lookups  # the proxy, not this process, connected to the host


@pytest.mark.parametrize("failure", ["down", "407"])
def test_a_failing_proxy_is_named_without_its_credentials(
        failure: str, foreign_tls: Any, lookups: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    with ProxyServer(behaviour="407") as proxy:
        port = proxy.port if failure == "407" else closed_port()
        monkeypatch.setenv("HTTPS_PROXY", f"http://someone:pw-SECRET@127.0.0.1:{port}")
        with RodinClient(FAKE_KEY, f"https://{FOREIGN}/api/v2", retries=0) as client, \
                pytest.raises(RodinNetworkError) as info:
            client.check_balance()
    text = str(info.value)
    assert f"proxy 127.0.0.1:{port}" in text
    assert "SECRET" not in text and "someone" not in text and FOREIGN not in text
    assert ("407" in text) == (failure == "407")
    assert ACTION.search(text) and "\n" not in text


# -- 6. the body cap and the deadline on every urllib3 ------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.parametrize("encoding", ["gzip, gzip", "gzip", "deflate", "br", "x-unknown"])
def test_compressed_answers_are_refused_unread(encoding: str, server: FaultServer) -> None:
    bomb = gzip.compress(gzip.compress(b" " * (200 * 1024 * 1024)))
    server.set(Reply(body=bomb, headers=[("Content-Encoding", encoding)]))
    before = peak_rss_mb()
    with RodinClient(FAKE_KEY, server.base_url) as client, \
            pytest.raises(BadResponseError, match="compressed") as info:
        client.check_balance()
    assert peak_rss_mb() - before < 100
    assert "RODIN_API_BASE" in str(info.value)


def test_identity_is_what_the_client_asks_for(server: FaultServer) -> None:
    server.set(Reply(body=b'{"balance": 3}', headers=[("Content-Encoding", "identity")]))
    with RodinClient(FAKE_KEY, server.base_url) as client:
        assert client.check_balance().balance == Decimal(3)


class EndlessServer:
    """Answers 200 chunked, then a chunk-size line that never ends (until the client goes)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.sent = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            try:
                while self.sent < 4 * 1024 ** 3:
                    conn.sendall(b"f" * 65536)
                    self.sent += 65536
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


def test_an_endless_chunk_size_line_ends_quickly_and_small() -> None:
    endless = EndlessServer()
    before = peak_rss_mb()
    start = time.monotonic()
    try:
        with RodinClient(FAKE_KEY, f"http://127.0.0.1:{endless.port}/api/v2", deadline=5,
                         retries=0) as client, pytest.raises(RodinError) as info:
            client.check_balance()
    finally:
        endless.close()
    assert time.monotonic() - start < 5 * 3  # the deadline, with room for a loaded machine
    assert peak_rss_mb() - before < 100
    assert endless.sent < 64 * 1024 * 1024
    assert "Could not reach" not in str(info.value)


# -- 10. messages a person can act on ------------------------------------------------------


@pytest.mark.parametrize("status,says", [
    (400, "refused the balance check"), (402, "payment required"), (405, "does not offer"),
    (409, "refused the balance check"), (418, "refused the balance check"),
    (422, "refused the balance check"), (431, "headers too large"),
    (300, "HTTP 300 instead of a balance"), (304, "not modified"), (102, "interim answer"),
    (103, "interim answer"), (410, "does not offer"),
])
def test_other_statuses_say_what_to_do(status: int, says: str, server: FaultServer) -> None:
    server.set(Reply(status=status, body=b"" if status < 200 or status == 304 else b"{}"))
    with RodinClient(FAKE_KEY, server.base_url) as client, pytest.raises(ServiceError) as info:
        client.check_balance()
    text = str(info.value)
    assert says in text and f"HTTP {status}" in text
    assert ACTION.search(text) and "\n" not in text
    assert "redirect" not in text


def test_431_with_an_over_long_key_says_the_key_is_too_long(server: FaultServer) -> None:
    server.set(Reply(status=431, body=b""))
    with RodinClient("FAKE-" + "k" * 5000, server.base_url) as client, \
            pytest.raises(ServiceError, match="the key is too long") as info:
        client.check_balance()
    assert "RODIN_API_KEY" in str(info.value) and "kkkkkkkk" not in str(info.value)


def test_https_to_a_plain_http_port_says_so() -> None:
    import http.server

    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    try:
        base = f"https://127.0.0.1:{plain.server_address[1]}/api/v2"
        with RodinClient(FAKE_KEY, base) as client, pytest.raises(RodinNetworkError) as info:
            client.check_balance()
    finally:
        plain.shutdown()
        plain.server_close()
    assert "does not speak TLS" in str(info.value)
    assert "REQUESTS_CA_BUNDLE" not in str(info.value)


def test_a_missing_ca_bundle_names_the_real_reason(server: FaultServer,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent")
    with RodinClient(FAKE_KEY, f"https://127.0.0.1:{server.port}/api/v2") as client, \
            pytest.raises(RodinNetworkError) as info:
        client.check_balance()
    assert "REQUESTS_CA_BUNDLE names /nonexistent, which does not exist" in str(info.value)


@pytest.mark.parametrize("reply", [
    Reply(body=b'{"balance": 1', headers=[("Content-Length", "100")], framing="close"),
    Reply(mode="raw", body=b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
    Reply(mode="raw", body=b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n"),
    Reply(mode="raw", body=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
], ids=["short-body", "not-http", "70kb-header", "bad-chunk"])
def test_malformed_http_is_not_could_not_reach(reply: Reply, server: FaultServer) -> None:
    server.set(reply)
    with RodinClient(FAKE_KEY, server.base_url) as client, \
            pytest.raises(BadResponseError) as info:
        client.check_balance()
    text = str(info.value)
    assert "Could not reach" not in text
    assert "malformed" in text or "cut short" in text
    assert server.count() == 1  # a broken answer is not retried


# -- 11. the key and the command line ------------------------------------------------------


@pytest.mark.parametrize("quoted", [f'"{FAKE_KEY}"', f"'{FAKE_KEY}'", f" '{FAKE_KEY}' "])
def test_a_key_in_matching_quotes_is_sent_without_them(quoted: str, sandbox: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert ApiKey(quoted) == ApiKey(FAKE_KEY)
    monkeypatch.setenv("RODIN_API_KEY", quoted)
    with RodinClient(base_url=sandbox.base_url) as client:
        assert client.check_balance().balance == Decimal(10)


def test_balance_with_stdout_closed_exits_non_zero(sandbox: Any) -> None:
    env = {**environ_without_keys(), "RODIN_API_KEY": FAKE_KEY,
           "RODIN_API_BASE": sandbox.base_url, "PYTHONPATH": str(Path.cwd())}
    done = subprocess.run(["sh", "-c", 'exec "$0" -m rodin_jupyter balance >&-', sys.executable],
                          env=env, capture_output=False, stderr=subprocess.PIPE, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1 and "standard output is closed" in done.stderr


def test_demo_with_an_unusable_home_exits_1_in_seconds(tmp_path: Path) -> None:
    env = {**environ_without_keys(), "HOME": "/proc", "PYTHONPATH": str(Path.cwd())}
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "rodin_jupyter", "demo",
                           "--output", str(tmp_path / "out.ipynb")],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-500:]
    assert done.stderr.count("\n") == 1 and "HOME" in done.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - start < 60


def test_a_balance_with_many_digits_is_read_exactly(server: FaultServer) -> None:
    server.set(json_reply('{"balance": 0.99999999999999999999999999999}'))
    with RodinClient(FAKE_KEY, server.base_url) as client:
        assert client.check_balance().balance < 1
