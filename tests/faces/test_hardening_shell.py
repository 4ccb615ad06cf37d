"""Issue 10 in a real IPython shell and on the shared monitor: readings belong to their
account, the monitor never wedges (fork, an interrupt at every step), display is honest."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from rodin_jupyter import RodinClient
from rodin_jupyter.balance import flight as flight_module
from rodin_jupyter.balance import monitor as monitor_module
from rodin_jupyter.balance.monitor import BalanceMonitor, get_monitor
from tests.conftest import FAKE_KEY, run_cell
from tests.faultserver import NETWORK_VARIABLES, FaultServer, Reply, json_reply


@pytest.fixture(autouse=True)
def hermetic_network(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NETWORK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def shell(ip: Any) -> Iterator[Any]:
    for name in ("ran", "b"):  # other tests share this shell
        ip.user_ns.pop(name, None)
    yield ip
    ip.run_line_magic("config", "RodinMagics.base_url = ''")
    for name in ("ran", "b"):
        ip.user_ns.pop(name, None)


def cell_output(shell: Any, capsys: pytest.CaptureFixture[str], code: str) -> tuple[bool, str]:
    result = run_cell(shell, code)
    out = capsys.readouterr()
    text = out.out + out.err
    if result.result is not None:
        text += repr(result.result)
    return bool(result.success), text


# -- 5. a reading counts only for the base and key it was taken with ----------------------


def test_switching_base_during_a_refresh_never_answers_for_the_old_account(
        shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from rodin_jupyter.widgets.panel import BalancePanel

    with FaultServer() as rich, FaultServer() as poor:
        rich.set(Reply(body=b'{"balance": 100}', mode="trickle_headers", interval=0.03))
        poor.set(Reply(body=b'{"balance": 0}'))
        shell.run_line_magic("config", f"RodinMagics.base_url = {rich.base_url!r}")
        panel = BalancePanel()
        worker = panel.refresh()
        deadline = time.monotonic() + 10
        while not rich.hits and time.monotonic() < deadline:
            time.sleep(0.01)
        assert rich.hits and get_monitor().snapshot().checking
        shell.run_line_magic("config", f"RodinMagics.base_url = {poor.base_url!r}")
        ok, text = cell_output(shell, capsys, "%rodin_balance --require 1")
        assert not ok and "Balance is 0 credits" in text
        ok, text = cell_output(shell, capsys, "%%rodin_guard --cost 1\nran = True")
        assert "ran" not in shell.user_ns
        assert "balance is 0" in text
        worker.join(15)
        assert not worker.is_alive()
        assert len(rich.hits) == 1  # the old answer arrived...
        assert get_monitor().snapshot().balance == Decimal(0)  # ...and did not count
        panel.close()


def test_a_reading_from_another_account_is_not_recorded(fresh_monitor: BalanceMonitor) -> None:
    with FaultServer() as a, FaultServer() as b:
        a.set(Reply(body=b'{"balance": 100}'))
        b.set(Reply(body=b'{"balance": 0}'))
        with RodinClient(FAKE_KEY, a.base_url) as other:
            foreign = other.check_balance()
        fresh_monitor.configure(lambda: RodinClient(FAKE_KEY, b.base_url), identity="b")
        assert fresh_monitor.refresh().balance == 0
        fresh_monitor.record(foreign)
        assert fresh_monitor.snapshot().balance == Decimal(0)


# -- 9. the monitor never wedges -----------------------------------------------------------


def test_a_forked_child_starts_with_a_fresh_monitor(fresh_monitor: BalanceMonitor) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("needs os.fork")
    with FaultServer() as server:
        server.set(Reply(mode="hang"), Reply(body=b'{"balance": 5}'))
        fresh_monitor.configure(lambda: RodinClient(FAKE_KEY, server.base_url, deadline=60,
                                                    read_timeout=60), identity="s")
        parent = threading.Thread(target=lambda: _swallow(fresh_monitor.refresh), daemon=True)
        parent.start()
        while not server.hits:
            time.sleep(0.01)
        assert fresh_monitor.snapshot().checking
        pid = os.fork()
        if pid == 0:  # the child: must not wait on the parent's flight
            signal.alarm(30)
            try:
                child = get_monitor()
                ok = child is not fresh_monitor and child.refresh().balance == 5
            except BaseException:
                ok = False
            os._exit(0 if ok else 1)
        status = None
        for _ in range(300):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the parent's balance check")
        assert os.waitstatus_to_exitcode(status) == 0
        assert len(server.hits) == 2


def _swallow(call: Any) -> None:
    with contextlib.suppress(Exception):
        call()


def _read_into(monitor: BalanceMonitor, box: list[Any]) -> None:
    try:
        box.append(monitor.refresh().balance)
    except Exception as exc:
        box.append(type(exc).__name__)


class Interrupter:
    """A trace function that raises KeyboardInterrupt at the k-th line run in the
    monitor's own code (monitor.py, flight.py): every step of a refresh, one at a time.

    Lines run while this thread holds the monitor's lock are skipped: an exception raised
    by a trace function at the exit of a ``with lock:`` skips the release, which no Python
    code can guard against (the client factory and the observers, where user code and
    real interrupts run, are always outside the lock).
    """

    FILES = (monitor_module.__file__, flight_module.__file__)

    def __init__(self, k: int, monitor: BalanceMonitor) -> None:
        self.monitor = monitor
        self.k = k
        self.count = 0
        self.fired = False

    def __call__(self, frame: Any, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename not in self.FILES:
            return None
        return self.local

    def local(self, frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and not self.fired and not self.monitor._lock._is_owned():
            self.count += 1
            if self.count == self.k:
                self.fired = True
                raise KeyboardInterrupt
        return self.local


def test_an_interrupt_at_every_step_of_a_refresh_leaves_the_monitor_usable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After the interrupt: a panel's read (another thread) ends, the next cell's read
    (this thread) works at once. The wait limit is cut to keep the test short."""
    monkeypatch.setattr(flight_module, "WAIT_LIMIT", 3.0)
    monkeypatch.setattr(monitor_module, "WAIT_LIMIT", 3.0)
    steps = {"factory": 0, "observer": 0}

    with FaultServer() as server:
        server.set(Reply(body=b'{"balance": 10}'))

        def factory() -> RodinClient:
            steps["factory"] += 1
            return RodinClient(FAKE_KEY, server.base_url)

        k = 0
        while True:
            k += 1
            monitor = BalanceMonitor(factory)
            monitor.subscribe(lambda snapshot: steps.__setitem__("observer",
                                                                 steps["observer"] + 1))
            interrupter = Interrupter(k, monitor)
            sys.settrace(interrupter)
            try:
                monitor.refresh()
            except KeyboardInterrupt:
                pass
            finally:
                sys.settrace(None)
            # Usable from another thread (a panel) and from this one (the next cell).
            box: list[Any] = []
            other = threading.Thread(target=_read_into, args=(monitor, box))
            other.start()
            started = time.monotonic()
            assert monitor.refresh().balance == Decimal(10), k
            assert time.monotonic() - started < 10, k
            other.join(20)
            assert not other.is_alive(), f"a panel's read hung after an interrupt at step {k}"
            assert box and box[0] in (Decimal(10), "RodinError"), (k, box)
            assert not monitor.snapshot().checking, k
            _read_into(monitor, box)
            assert box[-1] == Decimal(10), k
            monitor.close()
            if not interrupter.fired:
                break
        assert k > 20  # it really stepped through the refresh
        assert steps["factory"] > 0 and steps["observer"] > 0


def test_a_waiter_is_released_when_the_leader_was_interrupted() -> None:
    """The leader (the main thread) is interrupted in the request; a panel waiting on the
    same flight gets an answer, not a hang."""
    with FaultServer() as server:
        server.set(Reply(mode="hang"), Reply(body=b'{"balance": 4}'))
        monitor = BalanceMonitor(lambda: RodinClient(FAKE_KEY, server.base_url, deadline=30,
                                                     read_timeout=30))
        results: list[Any] = []

        def panel() -> None:
            while not server.hits:
                time.sleep(0.01)
            try:
                results.append(monitor.refresh().balance)
            except Exception as exc:
                results.append(type(exc).__name__)

        waiter = threading.Thread(target=panel, daemon=True)
        waiter.start()
        main = threading.main_thread().ident
        assert main is not None and threading.current_thread() is threading.main_thread()
        timer = threading.Timer(0.8, signal.pthread_kill, args=(main, signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            monitor.refresh()
        timer.cancel()
        waiter.join(15)
        assert not waiter.is_alive()
        assert results and results[0] in (Decimal(4), "RodinError")
        assert monitor.refresh().balance == Decimal(4)
        monitor.close()


# -- 4. the debugging recipe prints none of our headers ------------------------------------


def test_http_client_debuglevel_never_prints_our_headers(
        shell: Any, sandbox_env: Any, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http.client.HTTPConnection, "debuglevel", 1)
    # The recipe works on a connection that is not ours: the capture sees its prints.
    probe = http.client.HTTPConnection("127.0.0.1", sandbox_env.port, timeout=5)
    probe.request("GET", "/", headers={"X-Probe": "visible"})
    probe.getresponse().read()
    probe.close()
    assert "X-Probe" in capsys.readouterr().out
    ok, text = cell_output(shell, capsys, "%rodin_balance")
    assert ok and "Rodin balance: 10 credits" in text
    ok, more = cell_output(shell, capsys, "%rodin_balance --json")
    with RodinClient(FAKE_KEY, sandbox_env.base_url) as client:
        client.check_balance()
    out = capsys.readouterr()
    for seen in (text, more, out.out, out.err):
        assert "Authorization" not in seen and FAKE_KEY not in seen and "send:" not in seen


# -- 11. display rounds down and stays short -----------------------------------------------


@pytest.mark.parametrize("raw,shown,guard_says", [
    ("0.99999999999999999999999999999", "0.99 credits", "balance is 0.99"),
    ("1e-999999", "0 credits", "balance is 0"),
    ("-0", "0 credits", "balance is 0"),
])
def test_display_never_shows_more_than_is_there(raw: str, shown: str, guard_says: str,
                                                shell: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with FaultServer() as server:
        server.set(json_reply('{"balance": ' + raw + "}"))
        shell.run_line_magic("config", f"RodinMagics.base_url = {server.base_url!r}")
        ok, text = cell_output(shell, capsys, "%rodin_balance")
        assert ok and f"Rodin balance: {shown}" in text
        assert "-0 credits" not in text and len(text) < 400
        ok, text = cell_output(shell, capsys, "%%rodin_guard --cost 1\nran = True")
        assert "ran" not in shell.user_ns
        assert guard_says in text and len(text) < 600


@pytest.mark.parametrize("where", ["factory", "check", "observer-1", "observer-2"])
def test_an_interrupt_in_the_factory_client_or_observer_leaves_the_monitor_usable(
        where: str) -> None:
    with FaultServer() as server:
        server.set(Reply(body=b'{"balance": 10}'))
        armed = {"on": True}

        def trip(step: str) -> None:
            if armed["on"] and step == where:
                armed["on"] = False
                raise KeyboardInterrupt

        class Client(RodinClient):
            def check_balance(self) -> Any:
                trip("check")
                return super().check_balance()

        def factory() -> RodinClient:
            trip("factory")
            return Client(FAKE_KEY, server.base_url)

        calls = {"n": 0}

        def observer(snapshot: Any) -> None:
            calls["n"] += 1
            trip(f"observer-{calls['n']}")

        monitor = BalanceMonitor(factory)
        monitor.subscribe(observer)
        with pytest.raises(KeyboardInterrupt):
            monitor.refresh()
        box: list[Any] = []
        other = threading.Thread(target=_read_into, args=(monitor, box))
        other.start()
        other.join(10)
        assert not other.is_alive() and box == [Decimal(10)]
        assert monitor.refresh().balance == Decimal(10)
        monitor.close()
