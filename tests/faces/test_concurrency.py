"""Many readers at once: single-flight, consistent snapshots, no deadlock, no thread left.

Every wait here has a timeout: a deadlock shows up as a failed assertion, not a hung run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, cast

import pytest
import requests

from rodin_jupyter import RodinClient, RodinError
from rodin_jupyter.balance.monitor import BalanceMonitor, LedgerEntry, Snapshot
from rodin_jupyter.http.reading import BalanceReading
from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY, run_cell
from tests.faultserver import FaultServer, Reply

JOIN = 20.0


def start_threads(count: int, target: Callable[[int], None]) -> list[threading.Thread]:
    threads = [threading.Thread(target=target, args=(i,), name=f"test-reader-{i}", daemon=True)
               for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


def join_all(threads: list[threading.Thread], timeout: float = JOIN) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in threads if t.is_alive()]
    assert alive == [], f"deadlock? still running: {alive}"


def monitor_for(sandbox: Sandbox, **kwargs: Any) -> BalanceMonitor:
    return BalanceMonitor(lambda: RodinClient(FAKE_KEY, sandbox.base_url, **kwargs))


def test_concurrent_refreshes_share_one_request(sandbox: Sandbox) -> None:
    sandbox.inject_fault("/check_balance", status=None, delay=0.5)  # a slow real answer
    monitor = monitor_for(sandbox)
    barrier = threading.Barrier(20)
    results: list[BalanceReading] = []
    lock = threading.Lock()

    def reader(_: int) -> None:
        barrier.wait(5)
        reading = monitor.refresh()
        with lock:
            results.append(reading)

    join_all(start_threads(20, reader))
    assert len(results) == 20
    assert len({id(r) for r in results}) == 1, "every caller gets the one shared reading"
    assert sandbox.count("GET", "/check_balance") == 1
    assert monitor.requests_sent == 1
    snapshot = monitor.snapshot()
    assert snapshot.readings == 1 and not snapshot.checking and snapshot.error is None
    monitor.close()


class _InstantClient:
    """A client that answers at once: refreshes start and end as fast as threads allow."""

    def check_balance(self) -> BalanceReading:
        time.sleep(0.0005)
        return BalanceReading(Decimal(3), datetime.now(timezone.utc))

    def close(self) -> None:
        pass


def test_a_waiter_gets_its_own_flights_outcome() -> None:
    """A waiter that wakes after the next refresh has started still gets its answer."""
    monitor = BalanceMonitor(lambda: cast(RodinClient, _InstantClient()))
    failures: list[str] = []

    def hammer(_: int) -> None:
        for _ in range(300):
            try:
                assert monitor.refresh().balance == Decimal(3)
            except RodinError as exc:
                failures.append(str(exc))

    join_all(start_threads(8, hammer))
    assert failures == []
    assert monitor.requests_sent < 8 * 300  # and they did share


def test_a_shared_failure_reaches_every_waiter(sandbox: Sandbox) -> None:
    sandbox.inject_fault("/check_balance", status=401, delay=0.3)
    monitor = monitor_for(sandbox)
    barrier = threading.Barrier(10)
    errors: list[str] = []

    def reader(_: int) -> None:
        barrier.wait(5)
        try:
            monitor.refresh()
        except RodinError as exc:
            errors.append(str(exc))

    join_all(start_threads(10, reader))
    assert len(errors) == 10 and len(set(errors)) == 1 and "refused" in errors[0]
    assert sandbox.count("GET", "/check_balance") == 1
    monitor.close()


def test_snapshots_stay_consistent_under_load(sandbox: Sandbox) -> None:
    """Readers, writers of the ledger, charges and faults, all at once."""
    sandbox.set_balance("50")
    monitor = monitor_for(sandbox, retries=0, read_timeout=2.0, deadline=3.0)
    seen: list[Snapshot] = []
    seen_lock = threading.Lock()
    problems: list[str] = []
    stop = threading.Event()

    def observer(snapshot: Snapshot) -> None:
        with seen_lock:
            seen.append(snapshot)

    unsubscribe = monitor.subscribe(observer)

    def check(snapshot: Snapshot) -> None:
        if snapshot.stale != (snapshot.balance is not None and snapshot.error is not None):
            problems.append("stale flag")
        if snapshot.balance is not None and snapshot.checked_at is None:
            problems.append("a balance without its time")
        if snapshot.balance is not None and snapshot.balance < 0:
            problems.append("negative")

    def reader(i: int) -> None:
        last_readings = 0
        while not stop.is_set():
            try:
                if i % 3 == 0:
                    monitor.refresh()
                else:
                    monitor.read(max_age=0.05)
            except RodinError:
                pass
            snapshot = monitor.snapshot()
            check(snapshot)
            if snapshot.readings < last_readings:
                problems.append("readings went backwards")
            last_readings = snapshot.readings

    def ledger_writer(i: int) -> None:
        for n in range(25):
            monitor.add_ledger_entry(LedgerEntry(f"t{i}-{n}", Decimal("0.5"), Decimal(1),
                                                 Decimal("0.5"), datetime.now(timezone.utc)))

    def spender(_: int) -> None:
        session = requests.Session()
        for _ in range(12):
            session.post(f"{sandbox.base_url}/rodin", files={"prompt": (None, "x")},
                         headers={"Authorization": f"Bearer {FAKE_KEY}"}, timeout=10)
            if stop.wait(0.02):
                break
        session.close()

    def troublemaker(_: int) -> None:
        for status in (503, 500, 200):
            sandbox.inject_fault("/check_balance", status=status, body="{}", times=2)
            if stop.wait(0.1):
                break

    threads = start_threads(9, reader)
    writers = start_threads(4, ledger_writer) + start_threads(3, spender)
    writers += start_threads(1, troublemaker)
    join_all(writers)
    stop.set()
    join_all(threads)
    unsubscribe()

    assert problems == []
    final = monitor.refresh()
    snapshot = monitor.snapshot()
    assert len(snapshot.ledger) == 4 * 25, "no ledger entry lost"
    charged = sum((c.credits for c in sandbox.charges), Decimal(0))
    assert sandbox.balance == Decimal(50) - charged
    assert final.balance == sandbox.balance
    assert all(not s.stale or s.error for s in seen)
    monitor.close()


class _StubClient:
    """Stands in for RodinClient: each check waits for the test to say what happens."""

    def __init__(self, balance: str = "7") -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.raise_: BaseException | None = None
        self.balance = Decimal(balance)

    def check_balance(self) -> BalanceReading:
        self.entered.set()
        assert self.release.wait(10)
        if self.raise_ is not None:
            raise self.raise_
        return BalanceReading(self.balance, datetime.now(timezone.utc))

    def close(self) -> None:
        pass


def stub_monitor(stub: _StubClient) -> BalanceMonitor:
    return BalanceMonitor(lambda: cast(RodinClient, stub))


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_an_interrupted_leader_releases_the_waiters(
        interruption: type[BaseException]) -> None:
    """Ctrl-C during ``%rodin_balance`` must not leave every later read waiting forever."""
    stub = _StubClient()
    monitor = stub_monitor(stub)
    outcome: dict[str, object] = {}

    def leader() -> None:
        try:
            monitor.refresh()
        except BaseException as exc:  # the interruption itself reaches the leader
            outcome["leader"] = type(exc)

    def follower() -> None:
        try:
            outcome["follower"] = monitor.refresh()
        except RodinError as exc:
            outcome["follower"] = str(exc)

    lead = threading.Thread(target=leader, daemon=True)
    lead.start()
    assert stub.entered.wait(5)
    follow = threading.Thread(target=follower, daemon=True)
    follow.start()
    time.sleep(0.1)  # the follower is waiting on the leader's request
    stub.raise_ = interruption()
    stub.release.set()
    join_all([lead, follow], timeout=5)
    assert outcome["leader"] is interruption
    assert "interrupted" in str(outcome["follower"])
    snapshot = monitor.snapshot()
    assert not snapshot.checking and snapshot.error is not None
    stub.raise_ = None
    done = threading.Thread(target=monitor.refresh, daemon=True)
    done.start()
    join_all([done], timeout=5)
    assert monitor.snapshot().balance == Decimal(7)


def test_a_reading_from_before_configure_is_not_applied() -> None:
    """``%config RodinMagics.base_url`` while a check is in flight: the old answer is void."""
    old, new = _StubClient("111"), _StubClient("5")
    new.release.set()
    monitor = stub_monitor(old)
    worker = threading.Thread(target=monitor.refresh, daemon=True)
    worker.start()
    assert old.entered.wait(5)
    monitor.configure(lambda: cast(RodinClient, new))
    old.release.set()
    join_all([worker], timeout=5)
    assert monitor.snapshot().balance is None, "the old server's balance must not show"
    assert monitor.refresh().balance == Decimal(5)
    assert monitor.snapshot().balance == Decimal(5)


def test_observers_may_read_the_monitor_without_deadlock(sandbox: Sandbox) -> None:
    monitor = monitor_for(sandbox)
    calls: list[Snapshot] = []

    def nosy(snapshot: Snapshot) -> None:
        calls.append(monitor.snapshot())  # re-entrant read from inside a notification
        monitor.read(max_age=3600) if snapshot.balance is not None else None

    monitor.subscribe(nosy)
    worker = threading.Thread(target=monitor.refresh, daemon=True)
    worker.start()
    join_all([worker], timeout=10)
    assert calls and monitor.snapshot().balance == Decimal(10)


# -- a kernel's worth of readers: panel, magic, guard ------------------------------------------


def our_threads() -> list[str]:
    """Threads this package could have started (not the sandbox's, not the test's own)."""
    ignore = ("rodin-sandbox", "faultserver", "test-reader", "MainThread", "silent-server")
    return sorted(t.name for t in threading.enumerate()
                  if t.is_alive() and not t.name.startswith(ignore))


@pytest.fixture
def baseline_threads() -> Iterator[list[str]]:
    yield our_threads()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_panel_magic_and_guard_read_together(ip: Any, sandbox_env: Sandbox,
                                             fresh_monitor: BalanceMonitor,
                                             baseline_threads: list[str]) -> None:
    panel_module = pytest.importorskip("rodin_jupyter.widgets.panel")
    has_guard = "rodin_guard" in ip.magics_manager.magics["line"]
    sandbox_env.set_balance("100")
    sandbox_env.inject_fault("/check_balance", status=None, delay=0.05, times=None)
    panels = [panel_module.BalancePanel() for _ in range(3)]
    stop = threading.Event()
    failures: list[str] = []

    def clicker(i: int) -> None:
        while not stop.is_set():
            panels[i % len(panels)].refresh(wait=True, timeout=10)

    threads = start_threads(4, clicker)
    ip.user_ns.update(BASE=sandbox_env.base_url, AUTH={"Authorization": f"Bearer {FAKE_KEY}"})
    try:
        for _ in range(8):
            if not run_cell(ip, "b = %rodin_balance").success:
                failures.append("magic")
            if has_guard and not run_cell(
                    ip, '%%rodin_guard --tier Gen-2\nimport requests\nanswer = requests.post('
                        'f"{BASE}/rodin", headers=AUTH, files={"prompt": (None, "x"), '
                        '"tier": (None, "Gen-2")}, timeout=10)').success:
                failures.append("guard")
    finally:
        stop.set()
        join_all(threads)
    for name in ("b", "answer", "requests", "BASE", "AUTH"):
        ip.user_ns.pop(name, None)
    assert failures == []
    gets = sandbox_env.count("GET", "/check_balance")
    assert gets <= fresh_monitor.requests_sent, "a refresh did not go through the monitor"
    charged = sum((c.credits for c in sandbox_env.charges), Decimal(0))
    assert sandbox_env.balance == Decimal(100) - charged
    if has_guard:
        assert sandbox_env.count("POST", "/rodin") == 8 == len(sandbox_env.charges)
    final = fresh_monitor.refresh()
    assert all(panel.snapshot().balance == final.balance for panel in panels)
    ip.run_line_magic("unload_ext", "rodin_jupyter")
    try:
        assert wait_until(lambda: our_threads() == baseline_threads), our_threads()
        assert panel_module.panel_threads() == []
    finally:
        ip.run_line_magic("load_ext", "rodin_jupyter")


def test_no_thread_left_after_unload_even_mid_check(ip: Any, fresh_monitor: BalanceMonitor,
                                                    baseline_threads: list[str]) -> None:
    """A panel refresh waiting on a silent server when the extension is unloaded."""
    panel_module = pytest.importorskip("rodin_jupyter.widgets.panel")
    with FaultServer() as server:
        server.set(Reply(mode="hang"))
        ip.run_line_magic("config", f"RodinMagics.base_url = {server.base_url!r}")
        ip.run_line_magic("config", "RodinMagics.deadline = 1.0")
        try:
            panel = panel_module.BalancePanel()
            panel.refresh()
            assert wait_until(lambda: server.count() >= 1)
            ip.run_line_magic("unload_ext", "rodin_jupyter")
            assert wait_until(lambda: our_threads() == baseline_threads), our_threads()
        finally:
            ip.run_line_magic("load_ext", "rodin_jupyter")
            ip.run_line_magic("config", "RodinMagics.base_url = ''")
            ip.run_line_magic("config", "RodinMagics.deadline = 25.0")


def test_the_deadline_watchdog_leaves_no_thread(sandbox: Sandbox) -> None:
    before = our_threads()
    with RodinClient(FAKE_KEY, sandbox.base_url) as client:
        for _ in range(20):
            client.check_balance()
    assert wait_until(lambda: our_threads() == before), our_threads()


# -- the sandbox's ledger under load -------------------------------------------------------------


def test_sandbox_ledger_under_load() -> None:
    """Many clients at once: every credit charged is a credit gone, never below zero."""
    with Sandbox(balance="20", api_key=FAKE_KEY, job_seconds=0.1) as sandbox:
        outcomes: list[tuple[int, str | None]] = []
        lock = threading.Lock()
        barrier = threading.Barrier(16)

        def client(i: int) -> None:
            session = requests.Session()
            barrier.wait(5)
            for n in range(6):
                files = {"prompt": (None, f"thing {i}-{n}")}
                if n % 3 == 2:
                    files["tier"] = (None, "Gen-2.5-Extreme-High")  # 1 credit
                answer = session.post(f"{sandbox.base_url}/rodin", files=files, timeout=10,
                                      headers={"Authorization": f"Bearer {FAKE_KEY}"})
                session.get(f"{sandbox.base_url}/check_balance", timeout=10,
                            headers={"Authorization": f"Bearer {FAKE_KEY}"})
                with lock:
                    outcomes.append((answer.status_code, answer.json().get("uuid")))
            session.close()

        join_all(start_threads(16, client))
        charges = sandbox.charges
        accepted = [uuid for status, uuid in outcomes if uuid]
        assert len(outcomes) == 96
        assert len(accepted) == len(charges) == len({c.task_uuid for c in charges})
        assert {c.task_uuid for c in charges} == set(accepted)
        spent = sum((c.credits for c in charges), Decimal(0))
        assert sandbox.balance == Decimal(20) - spent
        assert Decimal(0) <= sandbox.balance < Decimal("0.5") or len(accepted) == 96
        assert sandbox.count("POST", "/rodin") == 96
