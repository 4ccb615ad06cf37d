"""The fault matrix: every fault in :data:`faultserver.FAULTS` against every surface.

Surfaces: the client, ``%rodin_balance`` in a real IPython shell, the ``rodin-jupyter
balance`` command, the panel and the guard (the last two once their modules exist). Each
cell checks a short message that says what happened and what to do, no traceback, no key,
a bounded time, and that nothing reached the second host of a redirect. The matrix runs
with short timeouts; one test runs the defaults against a server that never answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from rodin_jupyter import RodinClient, RodinError
from rodin_jupyter import cli as cli_module
from rodin_jupyter.balance.monitor import BalanceMonitor
from rodin_jupyter.http.client import DEFAULT_DEADLINE, DEFAULT_READ_TIMEOUT, DEFAULT_RETRIES
from rodin_jupyter.http.reading import BalanceReading
from rodin_jupyter.ipython.magics import RodinMagics
from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY, run_cell
from tests.faultserver import (
    FAULT_IDS,
    FAULTS,
    NETWORK_VARIABLES,
    SECOND_HOST,
    Fault,
    FaultServer,
    Mode,
    Reply,
    Timer,
    TLSFiles,
    client_defaults,
    env_for,
    fault_servers,
    have_openssl,
    make_tls,
    message_problems,
    second_host_available,
)

READ_TIMEOUT = 0.4
DEADLINE = 1.2
FAST: dict[str, Any] = {"read_timeout": READ_TIMEOUT, "deadline": DEADLINE, "backoff": 0.05}
SLACK = 1.5
"""Seconds a failing check may take beyond its deadline (thread joins, process start)."""

PACKAGE = Path(__file__).resolve().parents[2] / "rodin_jupyter"


@pytest.fixture(autouse=True)
def hermetic_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy and no CA bundle from the developer's environment."""
    for name in NETWORK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles | None:
    """A throwaway CA and server certificate, or None without the openssl command."""
    if not have_openssl():
        return None
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def matrix_env(tls_files: TLSFiles | None) -> TLSFiles | None:
    return tls_files


def needs(fault: Fault, tls: TLSFiles | None) -> None:
    if fault.tls and tls is None:
        pytest.skip("the openssl command is needed for the TLS fault")


def assert_message(text: str, fault: Fault) -> None:
    problems = message_problems(text, fault, FAKE_KEY)
    assert not problems, f"{fault.id}: message {text!r} " + "; ".join(problems)


def assert_second_host_untouched(other: FaultServer) -> None:
    assert other.hits == [], "a request reached the redirect's other host"


def prime_good_reading(server: FaultServer, fault: Fault, monitor: BalanceMonitor) -> None:
    """A known balance (10) before the fault: the next request gets it, or, where TLS cannot
    verify, the monitor takes it as read elsewhere (as from the guard's generation answer)."""
    if fault.tls:
        monitor.record(BalanceReading(Decimal(10), datetime.now(timezone.utc)))
    else:
        server.prepend(Reply())


# -- the client ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
def test_client(fault: Fault, matrix_env: TLSFiles | None) -> None:
    needs(fault, matrix_env)
    with fault_servers(fault, matrix_env) as (server, other):
        with RodinClient(FAKE_KEY, server.base_url, **FAST) as client, Timer() as timer, \
                pytest.raises(RodinError) as info:
            client.check_balance()
        assert type(info.value) is fault.error
        assert_message(str(info.value), fault)
        assert FAKE_KEY not in repr(info.value) and FAKE_KEY not in repr(client)
        error = info.value  # no chained requests exception to print
        assert error.__cause__ is None
        assert error.__context__ is None or error.__suppress_context__
        assert timer.elapsed < DEADLINE + SLACK
        if fault.attempts is not None:
            assert len(server.hits) == fault.attempts
        if fault.tls:  # the handshake failed (the server thread may notice a moment later)
            deadline = time.monotonic() + 2
            while server.tls_failures < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.tls_failures >= 1
        assert all(hit.authorization for hit in server.hits)
        assert_second_host_untouched(other)


# -- %rodin_balance ----------------------------------------------------------------------


def configure_magic(ip: Any, base_url: str) -> None:
    ip.run_line_magic("config", f"RodinMagics.base_url = {base_url!r}")
    ip.run_line_magic("config", f"RodinMagics.read_timeout = {READ_TIMEOUT}")
    ip.run_line_magic("config", f"RodinMagics.deadline = {DEADLINE}")


USER_NAMES = ("before", "after", "answer", "requests", "BASE", "AUTH")


@pytest.fixture
def magic_shell(ip: Any) -> Iterator[Any]:
    """The ``ip`` shell without our names; its RodinMagics settings go back to the defaults."""
    for name in USER_NAMES:
        ip.user_ns.pop(name, None)
    yield ip
    for name in USER_NAMES:
        ip.user_ns.pop(name, None)
    for name in ("base_url", "read_timeout", "deadline"):
        default = RodinMagics.class_traits()[name].default_value
        ip.run_line_magic("config", f"RodinMagics.{name} = {default!r}")


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
def test_magic(fault: Fault, matrix_env: TLSFiles | None, magic_shell: Any,
               fresh_monitor: BalanceMonitor, capsys: pytest.CaptureFixture[str],
               monkeypatch: pytest.MonkeyPatch) -> None:
    needs(fault, matrix_env)
    ip = magic_shell
    with fault_servers(fault, matrix_env) as (server, other):
        configure_magic(ip, server.base_url)
        prime_good_reading(server, fault, fresh_monitor)
        assert run_cell(ip, "before = %rodin_balance --cached" if fault.tls
                        else "before = %rodin_balance").success
        capsys.readouterr()
        with Timer() as timer:
            result = run_cell(ip, "%rodin_balance\nafter = 'ran'")
        out = capsys.readouterr()
        text = (out.out + out.err).strip()
        assert not result.success, "the cell must fail, so Run All stops"
        assert "after" not in ip.user_ns
        assert text.startswith("\x1b[0;31mrodin_jupyter: ") or text.startswith("rodin_jupyter:")
        assert_message(text, fault)
        assert timer.elapsed < DEADLINE + SLACK
        assert_second_host_untouched(other)
    snapshot = fresh_monitor.snapshot()
    assert snapshot.balance == Decimal(10) and snapshot.stale
    assert snapshot.error is not None and snapshot.error in text
    assert ip.user_ns["before"] == Decimal(10)


# -- the command line ----------------------------------------------------------------------


def run_cli_process(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rodin_jupyter", "balance"], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
def test_cli(fault: Fault, matrix_env: TLSFiles | None, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> None:
    """A real process with the defaults; the faults that only time out run in-process
    with short timeouts (the defaults are covered once, below)."""
    needs(fault, matrix_env)
    with fault_servers(fault, matrix_env) as (server, other):
        if fault.slow:
            for name, value in FAST.items():
                monkeypatch.setitem(client_defaults(), name, value)
            monkeypatch.setenv("RODIN_API_KEY", FAKE_KEY)
            monkeypatch.setenv("RODIN_API_BASE", server.base_url)
            with Timer() as timer:
                code = cli_module.main(["balance"])
            out = capsys.readouterr()
            stdout, stderr, limit = out.out, out.err, DEADLINE + SLACK
        else:
            with Timer() as timer:
                done = run_cli_process(env_for(server.base_url, FAKE_KEY, os.environ))
            code, stdout, stderr, limit = done.returncode, done.stdout, done.stderr, 10.0
        assert code == 1
        assert stdout == ""
        assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr
        assert stderr.startswith("rodin-jupyter: ")
        assert_message(stderr, fault)
        assert timer.elapsed < limit
        assert_second_host_untouched(other)


class SilentServerRun:
    """``rodin-jupyter balance`` with every default, against a server that never answers.

    Started in the background when the module starts (it takes about 25 s) and checked by
    the module's last test, so the wait overlaps the rest of the matrix.
    """

    def __init__(self) -> None:
        self.server = FaultServer().start()
        self.server.set(Reply(mode="hang"))
        env = env_for(self.server.base_url, FAKE_KEY, os.environ)
        for name in NETWORK_VARIABLES:
            env.pop(name, None)
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rodin_jupyter", "balance"], env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.elapsed: float | None = None
        self.output: tuple[str, str] = ("", "")
        self._waiter = threading.Thread(target=self._collect, name="silent-server-run",
                                        daemon=True)
        self._waiter.start()

    def _collect(self) -> None:
        self.output = self.process.communicate()
        self.elapsed = time.monotonic() - self.started  # when it ended, not when looked at

    def wait(self, timeout: float) -> None:
        self._waiter.join(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self._waiter.join(10)
        self.server.stop()


@pytest.fixture(scope="module", autouse=True)
def silent_server_run() -> Iterator[SilentServerRun]:
    run = SilentServerRun()
    yield run
    run.close()


@pytest.mark.timeout(60)
def test_zz_defaults_give_up_on_a_silent_server_within_30_s(
        silent_server_run: SilentServerRun) -> None:
    """The one slow test: no setting changed, a server that accepts and never answers."""
    assert DEFAULT_READ_TIMEOUT <= 10
    assert RodinMagics.class_traits()["read_timeout"].default_value <= 10
    assert DEFAULT_DEADLINE + client_defaults()["connect_timeout"] <= 30
    run = silent_server_run
    run.wait(timeout=40)
    stdout, stderr = run.output
    assert run.process.returncode == 1
    assert stdout == ""
    assert "did not answer in time" in stderr and stderr.count("\n") == 1, stderr
    assert FAKE_KEY not in stderr
    assert run.elapsed is not None and run.elapsed <= 30
    assert 2 <= len(run.server.hits) <= DEFAULT_RETRIES + 1  # it retried, within the deadline


# -- the panel -------------------------------------------------------------------------------


@pytest.fixture
def panel_module() -> Iterator[Any]:
    module = pytest.importorskip("rodin_jupyter.widgets.panel")
    module.shutdown_all()
    yield module
    module.shutdown_all()
    assert module.panel_threads() == []


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
def test_panel_keeps_the_last_balance_marked_stale(
        fault: Fault, matrix_env: TLSFiles | None, panel_module: Any,
        fresh_monitor: BalanceMonitor, monkeypatch: pytest.MonkeyPatch) -> None:
    needs(fault, matrix_env)
    from rodin_jupyter import BalancePanel
    from rodin_jupyter.balance.monitor import get_monitor

    with fault_servers(fault, matrix_env) as (server, other):
        fresh_monitor.configure(lambda: RodinClient(FAKE_KEY, server.base_url, **FAST))
        prime_good_reading(server, fault, fresh_monitor)
        panel = BalancePanel()
        if not fault.tls:
            panel.refresh(wait=True, timeout=10)
        assert get_monitor().snapshot().balance == Decimal(10)
        with Timer() as timer:
            panel.refresh(wait=True, timeout=DEADLINE + 5)
        assert timer.elapsed < DEADLINE + SLACK
        snapshot = get_monitor().snapshot()
        assert snapshot.balance == Decimal(10), "the last known balance is kept"
        assert snapshot.stale and not snapshot.checking
        assert snapshot.error is not None
        assert_message(snapshot.error, fault)
        text = repr(panel)
        assert "10 credits" in text and "stale" in text and FAKE_KEY not in text
        bundle = panel._repr_mimebundle_()
        assert "stale" in bundle["text/html"] and FAKE_KEY not in str(bundle)
        assert_second_host_untouched(other)
        panel.close()


# -- the guard -------------------------------------------------------------------------------

GENERATION_CELL = """\
import requests
answer = requests.post(f"{BASE}/rodin", headers=AUTH,
                       files={"prompt": (None, "a chair"), "tier": (None, "Gen-2")}, timeout=10)
"""


@pytest.mark.parametrize("fault", FAULTS, ids=FAULT_IDS)
def test_guard_fails_closed(fault: Fault, matrix_env: TLSFiles | None, magic_shell: Any,
                            sandbox_env: Sandbox, fresh_monitor: BalanceMonitor,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """The balance cannot be read: the generation cell is stopped, nothing is sent."""
    needs(fault, matrix_env)
    pytest.importorskip("rodin_jupyter.ipython.guard_magics")
    ip = magic_shell
    ip.user_ns.update(BASE=sandbox_env.base_url, AUTH={"Authorization": "Bearer " + FAKE_KEY})
    with fault_servers(fault, matrix_env) as (server, other):
        configure_magic(ip, server.base_url)
        assert run_cell(ip, "%rodin_guard on").success
        try:
            capsys.readouterr()
            with Timer() as timer:
                result = run_cell(ip, GENERATION_CELL)
            out = capsys.readouterr()
        finally:
            run_cell(ip, "%rodin_guard off")
        text = (out.out + out.err).strip()
        assert not result.success, "the guard must fail closed"
        assert "answer" not in ip.user_ns
        assert sandbox_env.count("POST", "/rodin") == 0 and sandbox_env.charges == []
        assert fault.says in text, text
        assert "Traceback" not in text and FAKE_KEY not in text
        assert len(text.splitlines()) <= 3
        assert timer.elapsed < DEADLINE + SLACK
        assert_second_host_untouched(other)


# -- redirects and TLS, beyond the matrix -----------------------------------------------------


def test_the_second_host_records_whether_authorization_arrived() -> None:
    """The recorder behind 'never follows a redirect' sees a header when one is sent."""
    with FaultServer(host=SECOND_HOST if second_host_available() else "127.0.0.1") as other:
        requests.get(other.base_url + "/check_balance", timeout=5,
                     headers={"Authorization": "Bearer not-a-key"})
        requests.get(other.base_url + "/check_balance", timeout=5)
    assert [hit.authorization for hit in other.hits] == [True, False]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_never_followed_even_to_the_same_host(status: int) -> None:
    with FaultServer() as server:
        server.set(Reply(status=status, body=b"x" * 1000,
                         headers=[("Location", "/api/v2/elsewhere")]), Reply())
        with RodinClient(FAKE_KEY, server.base_url) as client, \
                pytest.raises(RodinError, match="not followed") as info:
            client.check_balance()
        assert f"redirected the balance check to {server.netloc}" in str(info.value)
        assert [hit.path for hit in server.hits] == ["/api/v2/check_balance"]


def test_a_redirect_with_an_endless_body_is_not_read() -> None:
    """requests reads a redirect's whole body before deciding not to follow it."""
    with FaultServer() as server:
        server.set(Reply(status=302, body=b"x" * 10_000, mode="trickle_body", interval=0.2,
                         headers=[("Location", "https://example.invalid/")]))
        with RodinClient(FAKE_KEY, server.base_url) as client, Timer() as timer, \
                pytest.raises(RodinError, match=r"to example\.invalid; not followed"):
            client.check_balance()
    assert timer.elapsed < 2


def test_a_hostile_location_is_not_echoed() -> None:
    with FaultServer() as server:
        server.set(Reply(status=302, headers=[("Location", "http://\x1b[2Jevil:1/")]))
        with RodinClient(FAKE_KEY, server.base_url) as client, \
                pytest.raises(RodinError) as info:
            client.check_balance()
    assert "\x1b" not in str(info.value) and "another address" in str(info.value)


def test_a_custom_ca_bundle_is_honoured(tls_files: TLSFiles | None,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    if tls_files is None:
        pytest.skip("the openssl command is needed")
    with FaultServer(tls=tls_files) as server:
        server.set(Reply(body=b'{"balance": 4.5}'))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca))
        with RodinClient(FAKE_KEY, server.base_url) as client:
            assert client.check_balance().balance == Decimal("4.5")
        done = run_cli_process(env_for(server.base_url, FAKE_KEY, os.environ,
                                       {"REQUESTS_CA_BUNDLE": str(tls_files.ca)}))
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "Rodin balance: 4.5 credits"
        assert server.hits and all(hit.authorization for hit in server.hits)


@pytest.mark.parametrize("empty", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_empty_ca_variables_do_not_turn_verification_off(
        tls_files: TLSFiles | None, monkeypatch: pytest.MonkeyPatch, empty: str) -> None:
    if tls_files is None:
        pytest.skip("the openssl command is needed")
    monkeypatch.setenv(empty, "")
    with FaultServer(tls=tls_files) as server, RodinClient(FAKE_KEY, server.base_url) as client:
        with pytest.raises(RodinError, match="could not be verified"):
            client.check_balance()
        assert server.hits == []


def test_a_certificate_for_another_host_fails_even_with_the_ca(
        tls_files: TLSFiles | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if tls_files is None or not second_host_available():
        pytest.skip("needs the openssl command and 127.0.0.2")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca))
    # The certificate names 127.0.0.1 and localhost, not 127.0.0.2.
    with FaultServer(host=SECOND_HOST, tls=tls_files) as server, \
            RodinClient(FAKE_KEY, server.base_url) as client, \
            pytest.raises(RodinError, match="could not be verified"):
        client.check_balance()


def test_nothing_in_the_package_turns_tls_verification_off() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for needle in ("verify=False", "verify = False", "CERT_NONE", "check_hostname = False",
                       "_create_unverified_context", "disable_warnings"):
            assert needle not in text, f"{path.name}: {needle}"


def test_a_slow_trickle_is_cut_at_the_deadline_not_per_read() -> None:
    """Each byte arrives well within the read timeout; only the deadline can stop it."""
    with FaultServer() as server:
        server.set(Reply(mode="trickle_body", interval=0.1, body=b'{"balance": 1}' + b" " * 500))
        start = time.monotonic()
        with RodinClient(FAKE_KEY, server.base_url, read_timeout=5, deadline=1.0) as client, \
                pytest.raises(RodinError, match="did not answer in time"):
            client.check_balance()
        assert time.monotonic() - start < 2.0
        assert len(server.hits) == 1


def test_a_netrc_entry_never_replaces_the_key(sandbox: Sandbox, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """requests fills in Basic auth from ~/.netrc unless the request carries its own auth."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password something-else\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with RodinClient(FAKE_KEY, sandbox.base_url) as client:
        assert client.check_balance().balance == Decimal(10)
    assert [r.authorized for r in sandbox.requests] == [True]


@pytest.mark.parametrize("mode", ["trickle_headers", "trickle_body", "hang"])
def test_the_deadline_holds_over_tls(tls_files: TLSFiles | None, mode: Mode,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if tls_files is None:
        pytest.skip("the openssl command is needed")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_files.ca))
    with FaultServer(tls=tls_files) as server:
        server.set(Reply(mode=mode, interval=0.1, body=b'{"balance": 1}' + b" " * 300))
        with RodinClient(FAKE_KEY, server.base_url, read_timeout=5, deadline=0.8) as client, \
                Timer() as timer, pytest.raises(RodinError, match="did not answer in time"):
            client.check_balance()
    assert timer.elapsed < 1.5
