"""Every phase of a balance check counts against its deadline: name lookup, a proxy's
CONNECT, the answer; and one deadline thread serves every client of the process.

The slow resolver is a shim around ``socket.getaddrinfo`` for one made-up name (nothing is
looked up for real); the proxy is a socket server on 127.0.0.2 that never connects anywhere.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rodin_jupyter import RodinClient, RodinError
from tests.conftest import FAKE_KEY
from tests.faultserver import SECOND_HOST

SLOW_NAME = "rodin-slow-resolver.test"
PROXIED_NAME = "rodin-behind-proxy.test"


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def slow_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """``getaddrinfo`` takes 20 s for :data:`SLOW_NAME` (released at the end of the test)."""
    real = socket.getaddrinfo
    release = threading.Event()
    asked: list[str] = []

    def shim(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == SLOW_NAME:
            asked.append(host)
            release.wait(20)
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", shim)
    yield asked
    release.set()


def test_a_slow_name_lookup_counts_against_the_deadline(slow_resolver: list[str],
                                                        no_proxy_env: None) -> None:
    start = time.monotonic()
    with RodinClient(FAKE_KEY, f"https://{SLOW_NAME}/api/v2", deadline=1.0) as client, \
            pytest.raises(RodinError) as caught:
        client.check_balance()
    elapsed = time.monotonic() - start
    assert slow_resolver == [SLOW_NAME]  # asked once: no retry past the deadline
    assert "did not answer in time" in str(caught.value)
    assert "gave up after 1 s" in str(caught.value)  # the message tells the truth ...
    assert elapsed < 1.9, elapsed  # ... about the time


class TricklingProxy:
    """Answers a CONNECT one byte every ``interval`` seconds, forever; records the heads."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.heads: list[bytes] = []
        self._stop = threading.Event()
        self._listener = socket.create_server((SECOND_HOST, 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="faultserver-proxy",
                                        daemon=True)

    def __enter__(self) -> TricklingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(5)

    def _serve(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._trickle, args=(conn,), name="faultserver-trickle",
                             daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.heads.append(head)
            answer = b"HTTP/1.1 200 Connection established\r\nX-Padding: " + b"a" * 10_000
            for byte in answer:
                if self._stop.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return


def test_a_trickling_proxy_connect_is_cut_at_the_deadline(monkeypatch: pytest.MonkeyPatch,
                                                          no_proxy_env: None) -> None:
    with TricklingProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://{SECOND_HOST}:{proxy.port}")
        start = time.monotonic()
        with RodinClient(FAKE_KEY, f"https://{PROXIED_NAME}/api/v2", read_timeout=5,
                         deadline=1.0) as client, pytest.raises(RodinError) as caught:
            client.check_balance()
        elapsed = time.monotonic() - start
    assert [head.split(b" ")[:2] for head in proxy.heads] == [
        [b"CONNECT", f"{PROXIED_NAME}:443".encode()]]
    assert all(b"authorization" not in head.lower() for head in proxy.heads)
    assert FAKE_KEY.encode() not in b"".join(proxy.heads)
    assert "did not answer in time" in str(caught.value)
    assert elapsed < 1.9, elapsed


def test_one_deadline_thread_serves_every_client(no_proxy_env: None) -> None:
    from rodin_jupyter.sandbox.server import Sandbox

    with Sandbox(balance="3", api_key=FAKE_KEY) as sandbox:
        clients = [RodinClient(FAKE_KEY, sandbox.base_url) for _ in range(4)]
        try:
            readings = []
            threads = [threading.Thread(target=lambda c=c: readings.append(c.check_balance()))
                       for c in clients for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
        finally:
            for client in clients:
                client.close()
    assert len(readings) == 12
    names = [t.name for t in threading.enumerate() if t.name.startswith("rodin-deadline")]
    assert names == ["rodin-deadline"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_deadline_thread(no_proxy_env: None) -> None:
    """The parent's deadline thread does not exist in a child: the child starts its own, so a
    trickling answer is still cut at the child's deadline."""
    from tests.faultserver import FaultServer, Reply

    with FaultServer() as server:
        server.set(Reply(mode="trickle_body", interval=0.1, body=b'{"balance": 1}' + b" " * 500))
        with RodinClient(FAKE_KEY, server.base_url, read_timeout=5, deadline=0.5) as client:
            with pytest.raises(RodinError):
                client.check_balance()  # the parent's thread is running now
            pid = os.fork()
            if pid == 0:  # the child: report by exit status only
                code = 3
                try:
                    start = time.monotonic()
                    client.check_balance()
                except RodinError as exc:
                    ok = "did not answer in time" in str(exc) and time.monotonic() - start < 1.5
                    code = 0 if ok else 1
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
