"""The leak audit: run everything with a distinctive fake key, then look for it everywhere.

Everywhere means: every output, the saved notebooks (widget state included), log records
at every level (``rodin_jupyter``, urllib3, the sandbox, root), exception messages and
reprs of the public objects, ``%config`` output, IPython history, verbose tracebacks and
every URL requested. The expected number of hits is zero.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter import RodinClient, RodinError
from rodin_jupyter import cli as cli_module
from rodin_jupyter.balance.ledger import LedgerView, get_ledger
from rodin_jupyter.balance.monitor import BalanceMonitor, LedgerEntry, Snapshot
from rodin_jupyter.balance.text import Balance
from rodin_jupyter.errors import InsecureURLError, KeyRefusedError
from rodin_jupyter.http.key import ApiKey
from rodin_jupyter.http.reading import BalanceReading
from rodin_jupyter.ipython.magics import RodinMagics
from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY, run_cell
from tests.faultserver import (
    FAULTS,
    NETWORK_VARIABLES,
    FaultServer,
    Reply,
    TLSFiles,
    client_defaults,
    fault_servers,
    have_openssl,
    json_reply,
    make_tls,
)

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))

NEEDLES = (
    FAKE_KEY,
    FAKE_KEY[5:-5],  # a truncated repr still gives it away
    base64.b64encode(FAKE_KEY.encode()).decode(),
    base64.b64encode(f"Bearer {FAKE_KEY}".encode()).decode(),
)


class Evidence:
    """Everything the audit looked at, by where it came from."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, value: object) -> None:
        self.items.append((where, value if isinstance(value, str) else repr(value)))

    def leaks(self) -> list[str]:
        return [f"{where}: ...{text[max(0, text.find(n) - 60):text.find(n) + 10]!r}"
                for where, text in self.items for n in NEEDLES if n in text]

    def assert_clean(self) -> None:
        assert self.items, "the audit looked at nothing"
        leaks = self.leaks()
        assert leaks == [], "the key leaked:\n" + "\n".join(leaks[:20])


@pytest.fixture(autouse=True)
def hermetic_network(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NETWORK_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of every logger at DEBUG: ours, the sandbox's, urllib3's, root."""
    caplog.set_level(logging.DEBUG)
    for name in ("rodin_jupyter", "rodin_jupyter.sandbox", "urllib3", "requests"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def add_logs(evidence: Evidence, caplog: pytest.LogCaptureFixture) -> None:
    assert caplog.records, "nothing was logged: is the capture working?"
    assert any(r.name.startswith("urllib3") for r in caplog.records), "no urllib3 debug logs"
    evidence.add("log text", caplog.text)
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        evidence.add(f"log record {record.name}", formatter.format(record))
        evidence.add(f"log args {record.name}", repr(record.args))


def add_history(evidence: Evidence, ip: Any) -> None:
    manager = ip.history_manager
    evidence.add("history input", "\n".join(manager.input_hist_raw))
    evidence.add("history parsed", "\n".join(manager.input_hist_parsed))
    evidence.add("history outputs", repr(manager.output_hist_reprs))
    evidence.add("history tail", repr(list(manager.get_tail(10**6, raw=True, output=True,
                                                            include_latest=True))))


# -- notebooks ---------------------------------------------------------------------------

AUDIT_FIRST = """\
import logging
_audit = logging.FileHandler({log!r}, encoding="utf-8")
_audit.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)r"))
logging.getLogger().addHandler(_audit)
logging.getLogger().setLevel(logging.DEBUG)
for _name in ("rodin_jupyter", "urllib3", "requests"):
    logging.getLogger(_name).setLevel(logging.DEBUG)
%xmode Verbose
"""

AUDIT_LAST = """\
from rodin_jupyter.balance.monitor import get_monitor
%config RodinMagics
if "RodinGuard" in get_ipython().magics_manager.registry:
    get_ipython().run_line_magic("config", "RodinGuard")
_monitor = get_monitor()
print(repr(_monitor.snapshot()))
print(repr(_monitor.client()), repr(vars(_monitor.client())))
print(repr(dict(_monitor.client().session.headers)))
_history = get_ipython().history_manager
print(repr(list(_history.get_range(raw=True, output=True))))
print(repr(_history.output_hist_reprs))
print(repr(dict(get_ipython().user_ns.get("Out", {}))))
_audit.flush()
"""


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_leak_nothing(notebook: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch, all_logs: Any) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from rodin_jupyter.demo import local_kernel_manager

    log_file = tmp_path / "kernel.log"
    ipython_dir = tmp_path / "ipython"
    nb = nbformat.read(notebook, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(AUDIT_FIRST.format(log=str(log_file))))
    nb.cells.append(nbformat.v4.new_code_cell(AUDIT_LAST))
    with Sandbox(balance="100", api_key=FAKE_KEY, job_seconds=0.3) as sandbox:
        monkeypatch.setenv("RODIN_API_KEY", FAKE_KEY)
        monkeypatch.setenv("RODIN_API_BASE", sandbox.base_url)
        monkeypatch.setenv("IPYTHONDIR", str(ipython_dir))
        sockets = tmp_path / "sockets"
        sockets.mkdir()
        client = nbclient.NotebookClient(
            nb, timeout=120, kernel_name="python3", km=local_kernel_manager(str(sockets)),
            store_widget_state=True, resources={"metadata": {"path": str(notebook.parent)}})
        client.execute()
        requests_seen = sandbox.requests
    saved = tmp_path / notebook.name
    nbformat.write(nb, saved)

    evidence = Evidence()
    text = saved.read_text()
    evidence.add("saved notebook", text)
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert outputs, "the notebook produced no output"
    evidence.add("outputs", json.dumps(outputs))
    if "balance_panel" in notebook.name:
        assert "application/vnd.jupyter.widget-state+json" in nb.metadata.get("widgets", {})
    evidence.add("widget state", json.dumps(nb.metadata.get("widgets", {})))
    assert log_file.stat().st_size > 0
    evidence.add("kernel log", log_file.read_text(errors="replace"))
    for history in ipython_dir.rglob("history.sqlite"):
        with sqlite3.connect(history) as db:
            rows = db.execute("SELECT * FROM history").fetchall()
            rows += db.execute("SELECT * FROM output_history").fetchall()
        evidence.add("kernel history", repr(rows))
        evidence.add("kernel history file", history.read_bytes().decode("latin-1"))
    evidence.add("sandbox requests", repr(requests_seen))
    assert requests_seen
    assert all(r.authorized for r in requests_seen if not r.path.startswith("/files/"))
    add_logs_if_any(evidence, all_logs)
    evidence.assert_clean()


def add_logs_if_any(evidence: Evidence, caplog: pytest.LogCaptureFixture) -> None:
    """The sandbox ran in this process: its own log records."""
    assert any(r.name == "rodin_jupyter.sandbox" for r in caplog.records)
    evidence.add("sandbox log", caplog.text)


# -- the fault matrix, every surface ---------------------------------------------------------

AUDIT_TIMEOUTS: dict[str, Any] = {"read_timeout": 0.2, "deadline": 0.5, "backoff": 0.02}


@pytest.fixture
def verbose_shell(ip: Any) -> Iterator[Any]:
    """The ``ip`` shell with ``%xmode Verbose`` (tracebacks print local values)."""
    mode = ip.InteractiveTB.mode
    ip.run_line_magic("xmode", "Verbose")
    yield ip
    ip.run_line_magic("xmode", mode)
    for name in ("answer", "requests", "BASE", "AUTH", "b"):
        ip.user_ns.pop(name, None)
    for name in ("base_url", "read_timeout", "deadline"):
        default = RodinMagics.class_traits()[name].default_value
        ip.run_line_magic("config", f"RodinMagics.{name} = {default!r}")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles | None:
    return make_tls(tmp_path_factory.mktemp("tls")) if have_openssl() else None


def widget_states() -> list[str]:
    """The state of every live widget: what "Save Widget State" would write to disk."""
    try:
        from rodin_jupyter.compat import live_widgets
        instances = live_widgets()
    except ImportError:
        return []
    return [json.dumps(w.get_state(), default=repr) for w in list(instances.values())]


def test_the_fault_matrix_leaks_nothing(verbose_shell: Any, sandbox_env: Sandbox,
                                        fresh_monitor: BalanceMonitor, all_logs: Any,
                                        capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch,
                                        tls_files: TLSFiles | None) -> None:
    ip = verbose_shell
    evidence = Evidence()
    has_guard = "rodin_guard" in ip.magics_manager.magics["line"]
    try:
        import rodin_jupyter.widgets.panel as panel_module
    except ImportError:
        panel_module = None  # type: ignore[assignment]
    ip.user_ns.update(BASE=sandbox_env.base_url, AUTH={"Authorization": "Bearer " + FAKE_KEY})
    for name, value in AUDIT_TIMEOUTS.items():  # for the command line, run in-process here
        monkeypatch.setitem(client_defaults(), name, value)
    ip.run_line_magic("config", f"RodinMagics.read_timeout = {AUDIT_TIMEOUTS['read_timeout']}")
    ip.run_line_magic("config", f"RodinMagics.deadline = {AUDIT_TIMEOUTS['deadline']}")
    urls: list[str] = []
    for fault in FAULTS:
        if fault.tls and tls_files is None:
            continue
        with fault_servers(fault, tls_files) as (server, other):
            server.prepend(Reply())  # one good reading first, so there is a stale state
            with RodinClient(FAKE_KEY, server.base_url, **AUDIT_TIMEOUTS) as client:
                if not fault.tls:
                    evidence.add("reading", client.check_balance())
                try:
                    client.check_balance()
                except RodinError as exc:
                    evidence.add(f"{fault.id} error", f"{exc} {exc!r} {exc.args!r} {vars(exc)!r}")
                evidence.add("client", f"{client!r} {vars(client)!r}")
            server.prepend(Reply())
            ip.run_line_magic("config", f"RodinMagics.base_url = {server.base_url!r}")
            cells = ["%rodin_balance", "%rodin_balance", "%rodin_balance --json",
                     "%rodin_balance --cached", "%rodin_balance --require 1",
                     "%rodin_balance --ledger"]
            for cell in cells[:2] if fault.slow else cells:  # the slow ones say the same
                run_cell(ip, cell)
            if has_guard:
                run_cell(ip, "%rodin_guard on")
                run_cell(ip, 'import requests\nanswer = requests.post(f"{BASE}/rodin", '
                             'headers=AUTH, files={"prompt": (None, "x")}, timeout=5)')
                run_cell(ip, "%rodin_guard off")
                run_cell(ip, '%%rodin_guard --tier Gen-2\nanswer = requests.post('
                             'f"{BASE}/rodin", headers=AUTH, files={"prompt": (None, "x")}, '
                             'timeout=5)')
            if panel_module is not None:
                panel = panel_module.BalancePanel()
                panel.refresh(wait=True, timeout=5)
                evidence.add("panel", f"{panel!r} {panel._repr_mimebundle_()!r}")
                evidence.add("widgets", "\n".join(widget_states()))
                panel.close()
            monkeypatch.setenv("RODIN_API_KEY", FAKE_KEY)
            monkeypatch.setenv("RODIN_API_BASE", server.base_url)
            cli_module.main(["balance", "--json"])
            evidence.add(f"{fault.id} snapshot", fresh_monitor.snapshot())
            urls += [h.path for h in server.hits + other.hits]
        out = capsys.readouterr()
        evidence.add(f"{fault.id} stdout", out.out)
        evidence.add(f"{fault.id} stderr", out.err)
    if panel_module is not None:
        panel_module.shutdown_all()
    run_cell(ip, "%config RodinMagics")
    if has_guard:
        run_cell(ip, "%config RodinGuard")
    out = capsys.readouterr()
    evidence.add("%config", out.out + out.err)
    assert "RodinMagics.base_url" in out.out
    add_history(evidence, ip)
    add_logs(evidence, all_logs)
    evidence.add("urls", "\n".join(urls))
    evidence.add("sandbox requests", repr(sandbox_env.requests))
    evidence.add("monitor", f"{fresh_monitor!r} {vars(fresh_monitor)!r}")
    assert len(urls) > len(FAULTS)
    assert any("Traceback" not in text for _, text in evidence.items)
    evidence.assert_clean()


def test_an_interrupted_check_leaks_nothing_in_a_verbose_traceback(
        verbose_shell: Any, fresh_monitor: BalanceMonitor, sandbox_env: Sandbox,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C while waiting for the service: ``%xmode Verbose`` prints every frame's locals,
    down through requests and urllib3, where the Authorization header lives."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals reach the main thread only")
    ip = verbose_shell
    with FaultServer() as server:
        server.set(Reply(mode="hang"))
        ip.run_line_magic("config", f"RodinMagics.base_url = {server.base_url!r}")
        ip.run_line_magic("config", "RodinMagics.deadline = 20")
        main = threading.main_thread().ident
        assert main is not None
        timer = threading.Timer(0.5, signal.pthread_kill, args=(main, signal.SIGINT))
        timer.start()
        try:
            result = run_cell(ip, "%rodin_balance")
        finally:
            timer.cancel()
    out = capsys.readouterr()
    text = out.out + out.err
    assert not result.success
    assert "KeyboardInterrupt" in text
    assert "self" in text  # it is the verbose kind, with frame locals
    evidence = Evidence()
    evidence.add("verbose traceback", text)
    evidence.assert_clean()
    # ...and the monitor is not left waiting for a check that was interrupted.
    ip.run_line_magic("config", f"RodinMagics.base_url = {sandbox_env.base_url!r}")
    assert run_cell(ip, "b = %rodin_balance").success
    assert ip.user_ns["b"] == Decimal(10)


def test_public_objects_never_show_the_key(sandbox: Sandbox) -> None:
    evidence = Evidence()
    key = ApiKey(FAKE_KEY, source="RODIN_API_KEY")
    evidence.add("ApiKey", f"{key!r} {key!s} {key.source} {hash(key)}")
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(key)
    client = RodinClient(key, sandbox.base_url)
    reading = client.check_balance()
    evidence.add("RodinClient", f"{client!r} {client!s} {vars(client)!r}")
    evidence.add("session", f"{client.session.headers!r} {vars(client.session)!r}")
    assert "Authorization" not in client.session.headers
    evidence.add("BalanceReading", f"{reading!r} {reading!s}")
    monitor = BalanceMonitor(lambda: RodinClient(FAKE_KEY, sandbox.base_url))
    monitor.refresh()
    entry = LedgerEntry("cell 3", Decimal("0.5"), Decimal(10), Decimal("9.5"),
                        reading.checked_at)
    monitor.add_ledger_entry(entry)
    snapshot = monitor.snapshot()
    evidence.add("Snapshot", f"{snapshot!r} {snapshot!s}")
    evidence.add("BalanceMonitor", f"{monitor!r} {vars(monitor)!r}")
    balance = Balance(reading.balance, reading.checked_at)
    evidence.add("Balance", f"{balance!r} {balance._repr_html_()} {balance.to_json()!r}")
    ledger = LedgerView(get_ledger())
    evidence.add("LedgerView", f"{ledger!r} {ledger._repr_html_()} {ledger.json_text()}")
    with RodinClient("FAKE-some-other-key", sandbox.base_url) as wrong, \
            pytest.raises(KeyRefusedError) as info:
        wrong.check_balance()
    evidence.add("error", f"{info.value!r} {info.value!s} {info.value.args!r}")
    assert "FAKE-some-other-key" not in repr(info.value)
    evidence.add("Snapshot type", repr(Snapshot()))
    evidence.add("BalanceReading type", repr(BalanceReading(Decimal(1), reading.checked_at)))
    client.close()
    monitor.close()
    evidence.assert_clean()


@pytest.mark.parametrize("base", [
    f"http://user:{FAKE_KEY}@127.0.0.1:9/api/v2",
    f"http://{FAKE_KEY}@127.0.0.1:9/api/v2",
    f"http://127.0.0.1:9/api/v2?key={FAKE_KEY}",
    f"http://127.0.0.1:9/api/v2#{FAKE_KEY}",
])
def test_a_url_carrying_the_key_is_refused_without_echoing_it(base: str) -> None:
    with pytest.raises(InsecureURLError) as info:
        RodinClient("FAKE-another", base)
    assert FAKE_KEY not in str(info.value) and FAKE_KEY not in repr(info.value)


def test_the_key_is_never_in_a_url(sandbox: Sandbox, all_logs: Any) -> None:
    """Only the header carries it: not the path, not the query, not the logged request line."""
    with RodinClient(FAKE_KEY, sandbox.base_url) as client:
        client.check_balance()
    assert all(FAKE_KEY not in r.path for r in sandbox.requests)
    lines = [r.getMessage() for r in all_logs.records if r.name.startswith("urllib3")]
    assert any("/api/v2/check_balance" in line for line in lines)
    assert all(FAKE_KEY not in line for line in lines)


def test_the_environment_variable_is_read_not_copied(monkeypatch: pytest.MonkeyPatch,
                                                     sandbox: Sandbox) -> None:
    """The key stays where the user put it: no module-level copy, no new variable."""
    monkeypatch.setenv("RODIN_API_KEY", FAKE_KEY)
    before = dict(os.environ)
    with RodinClient(base_url=sandbox.base_url) as client:
        client.check_balance()
    assert dict(os.environ) == before
    import rodin_jupyter

    for module_name, module in list(__import__("sys").modules.items()):
        if module_name.startswith("rodin_jupyter") and module is not None:
            for name, value in vars(module).items():
                assert not (isinstance(value, str) and FAKE_KEY in value), (module_name, name)
    assert rodin_jupyter.__version__


# -- what the server sends back: echoes of the key (issue 10) -----------------------------

ECHOES = [
    json_reply(json.dumps({"error": FAKE_KEY}), 401),
    json_reply(json.dumps({"error": "invalid key " + FAKE_KEY})),
    json_reply(json.dumps({"error": "Bearer " + FAKE_KEY})),
    json_reply(json.dumps({"error": FAKE_KEY[4:20]})),
    json_reply(json.dumps({"error": base64.b64encode(FAKE_KEY.encode()).decode()})),
    Reply(status=302, body=b"", headers=[("Location", f"http://{FAKE_KEY}.example/x")]),
    Reply(status=302, body=b"", headers=[("Location", f"http://127.0.0.1:1/{FAKE_KEY}")]),
    Reply(status=418, body=f"no such key {FAKE_KEY}".encode(), content_type="text/plain"),
    Reply(status=400, body=f'{{"error": "Bearer {FAKE_KEY}"}}'.encode()),
]


def key_runs(text: str, run: int = 8) -> list[str]:
    """Every piece of the key at least ``run`` characters long found in ``text``."""
    return sorted({FAKE_KEY[i:i + run] for i in range(len(FAKE_KEY) - run + 1)
                   if FAKE_KEY[i:i + run].lower() in text.lower()})


@pytest.mark.parametrize("reply", ECHOES, ids=[f"echo-{i}" for i in range(len(ECHOES))])
def test_server_echoes_of_the_key_reach_no_message(reply: Reply, ip: Any,
                                                   fresh_monitor: BalanceMonitor,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from rodin_jupyter.widgets import panel as panel_module

    evidence = Evidence()
    ip.user_ns.pop("ran", None)  # other tests share this shell
    with FaultServer() as server:
        server.set(reply)
        with RodinClient(FAKE_KEY, server.base_url, retries=0) as client:
            with pytest.raises(RodinError) as info:
                client.check_balance()
            evidence.add("client error", f"{info.value} {info.value!r} {info.value.args!r}")
        ip.run_line_magic("config", f"RodinMagics.base_url = {server.base_url!r}")
        for cell in ("%rodin_balance", "%rodin_balance --json", "%rodin_balance --require 1",
                     "%%rodin_guard --cost 1\nran = True"):
            run_cell(ip, cell)
        assert "ran" not in ip.user_ns  # the guard failed closed
        panel = panel_module.BalancePanel()
        panel.refresh(wait=True, timeout=5)
        evidence.add("panel", f"{panel!r} {panel._repr_mimebundle_()!r}")
        evidence.add("widgets", "\n".join(widget_states()))
        evidence.add("snapshot", fresh_monitor.snapshot())
        panel.close()
        ip.run_line_magic("config", "RodinMagics.base_url = ''")
    out = capsys.readouterr()
    evidence.add("outputs", out.out + out.err)
    assert "RODIN_API" in out.out + out.err  # the messages were shown, and say what to do
    evidence.assert_clean()
    for where, text in evidence.items:
        assert key_runs(text) == [], f"{where} carries a piece of the key"
