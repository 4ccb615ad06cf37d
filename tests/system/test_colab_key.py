"""The key from Colab's Secrets panel, with a stand-in ``google.colab.userdata`` on sys.path.

The stand-in behaves like Colab's module: ``get(name)`` returns the secret, or raises
``SecretNotFoundError`` / ``NotebookAccessError`` (Colab's class names), and records which
names were asked for. The secrets live in a JSON file named by an environment variable, so
the same stand-in serves this process and a real kernel.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rodin_jupyter.errors import MissingKeyError
from rodin_jupyter.http.client import RodinClient
from rodin_jupyter.http.colab_key import in_colab
from rodin_jupyter.http.key import resolve_key
from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY

REPO = Path(__file__).resolve().parents[2]
SECRETS_VARIABLE = "STANDIN_COLAB_SECRETS"

USERDATA = '''
import json, os

class SecretNotFoundError(Exception):
    pass

class NotebookAccessError(Exception):
    pass

class TimeoutException(Exception):
    pass

def get(key):
    path = os.environ["STANDIN_COLAB_SECRETS"]
    with open(path + ".asked", "a") as asked:
        asked.write(key + "\\n")
    with open(path) as f:
        entry = json.load(f).get(key)
    if entry is None:
        raise SecretNotFoundError(f"Secret {key} does not exist.")
    if entry.get("hang"):
        import time
        time.sleep(3600)
    if entry.get("timeout"):
        raise TimeoutException(f"timed out while reading {entry['value']}")
    if not entry["access"]:
        raise NotebookAccessError(f"Notebook does not have access to secret {key}")
    return entry["value"]
'''


class StandIn:
    """The stand-in package's folder and the secrets it serves."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.secrets_file = root / "secrets.json"
        package = root / "site" / "google" / "colab"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "userdata.py").write_text(USERDATA)
        self.set()

    @property
    def site(self) -> Path:
        return self.root / "site"

    def set(self, **secrets: dict[str, object]) -> None:
        self.secrets_file.write_text(json.dumps(secrets))

    def asked(self) -> list[str]:
        path = Path(f"{self.secrets_file}.asked")
        return path.read_text().split() if path.exists() else []


def _forget_google() -> None:
    for name in [m for m in sys.modules if m == "google" or m.startswith("google.")]:
        del sys.modules[name]


@pytest.fixture
def colab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    """This process looks like a Colab runtime, with no key variable set."""
    if in_colab():
        pytest.skip("google.colab is really installed here")
    stand_in = StandIn(tmp_path)
    monkeypatch.setenv(SECRETS_VARIABLE, str(stand_in.secrets_file))
    saved = {m: sys.modules[m] for m in sys.modules if m == "google" or m.startswith("google.")}
    _forget_google()
    monkeypatch.syspath_prepend(str(stand_in.site))
    importlib.import_module("google.colab")  # as Colab's runtime does at kernel start
    yield stand_in
    _forget_google()
    sys.modules.update(saved)


def test_outside_colab_nothing_is_asked_and_the_message_is_unchanged() -> None:
    if in_colab():
        pytest.skip("google.colab is really installed here")
    with pytest.raises(MissingKeyError) as caught:
        resolve_key()
    assert "RODIN_API_KEY" in str(caught.value)
    assert "Colab" not in str(caught.value)


def test_importable_is_not_colab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """google-colab installed in an ordinary kernel: its userdata would wait forever."""
    if in_colab():
        pytest.skip("this is a Colab kernel")
    stand_in = StandIn(tmp_path)
    stand_in.set(RODIN_API_KEY={"value": FAKE_KEY, "access": True})
    monkeypatch.setenv(SECRETS_VARIABLE, str(stand_in.secrets_file))
    monkeypatch.syspath_prepend(str(stand_in.site))
    with pytest.raises(MissingKeyError) as caught:
        resolve_key()
    assert "Colab" not in str(caught.value)
    assert stand_in.asked() == []


def test_the_secret_is_the_key_and_stays_redacted(colab: StandIn, sandbox: Sandbox) -> None:
    colab.set(RODIN_API_KEY={"value": FAKE_KEY, "access": True})
    assert in_colab()
    key = resolve_key()
    assert key.reveal() == FAKE_KEY
    assert key.source == "Colab secret RODIN_API_KEY"
    assert FAKE_KEY not in repr(key) and FAKE_KEY not in str(key)
    with RodinClient(base_url=sandbox.base_url) as client:  # the real client, over HTTP
        assert FAKE_KEY not in repr(client)
        assert client.check_balance().balance == 10
    assert set(colab.asked()) == {"RODIN_API_KEY"}


def test_hyper3d_name_is_read_when_rodin_is_absent(colab: StandIn) -> None:
    colab.set(HYPER3D_API_KEY={"value": FAKE_KEY, "access": True})
    key = resolve_key()
    assert key.reveal() == FAKE_KEY
    assert key.source == "Colab secret HYPER3D_API_KEY"
    assert colab.asked() == ["RODIN_API_KEY", "HYPER3D_API_KEY"]


def test_a_variable_wins_and_colab_is_not_asked(colab: StandIn,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    colab.set(RODIN_API_KEY={"value": "from-the-secrets-panel", "access": True})
    monkeypatch.setenv("HYPER3D_API_KEY", FAKE_KEY)
    assert resolve_key().reveal() == FAKE_KEY
    assert colab.asked() == []


@pytest.mark.parametrize("secrets", [
    {"RODIN_API_KEY": {"value": FAKE_KEY, "access": False}},
    {"HYPER3D_API_KEY": {"value": FAKE_KEY, "access": False}},
], ids=["rodin", "hyper3d"])
def test_no_access_says_what_to_do_in_one_line(colab: StandIn,
                                               secrets: dict[str, dict[str, object]]) -> None:
    colab.set(**secrets)
    with pytest.raises(MissingKeyError) as caught:
        resolve_key()
    message = str(caught.value)
    assert "\n" not in message and FAKE_KEY not in message
    assert next(iter(secrets)) in message
    assert "Secrets panel" in message and "Notebook access" in message
    # Colab's exception (whose text a traceback would show) is not chained on.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


def test_no_secret_in_colab_points_at_the_secrets_panel(colab: StandIn) -> None:
    with pytest.raises(MissingKeyError) as caught:
        resolve_key()
    assert "Secrets panel" in str(caught.value) and "\n" not in str(caught.value)
    assert colab.asked() == ["RODIN_API_KEY", "HYPER3D_API_KEY"]


def test_another_failure_is_one_line_without_colabs_text(colab: StandIn) -> None:
    colab.set(RODIN_API_KEY={"value": FAKE_KEY, "access": True, "timeout": True})
    with pytest.raises(MissingKeyError) as caught:
        resolve_key()
    message = str(caught.value)
    assert "TimeoutException" in message and "\n" not in message
    assert FAKE_KEY not in message  # Colab's own message carried the value here
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_real_kernel_reads_the_secret_and_prints_no_key(colab: StandIn, sandbox: Sandbox,
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    from rodin_jupyter.demo import local_kernel_manager

    sandbox.set_balance("7.5")
    colab.set(RODIN_API_KEY={"value": FAKE_KEY, "access": True})
    path = os.pathsep.join([str(colab.site), str(REPO), os.environ.get("PYTHONPATH", "")])
    monkeypatch.setenv("PYTHONPATH", path.rstrip(os.pathsep))
    monkeypatch.setenv("RODIN_API_BASE", sandbox.base_url)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in (
        "import google.colab, os; print(sorted(k for k in os.environ if 'API_KEY' in k))",
        "%load_ext rodin_jupyter",
        "%rodin_balance",
    )]
    km = local_kernel_manager(str(tmp_path))
    try:
        NotebookClient(nb, timeout=120, kernel_name="python3", km=km).execute()
    finally:
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    saved = nbformat.writes(nb)
    assert FAKE_KEY not in saved
    outputs = [o for c in nb.cells for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"], saved
    assert "[]" in saved  # no key variable in the kernel: the key came from the secret
    assert "Rodin balance: 7.5 credits" in saved
    assert "RODIN_API_KEY" in colab.asked()


def test_a_secrets_panel_that_never_answers_ends_in_one_line(
        colab: StandIn, monkeypatch: pytest.MonkeyPatch) -> None:
    """userdata.get answers from the browser, which may be gone: the lookup is bounded, and
    the balance panel's lock is not held meanwhile."""
    import threading
    import time

    from rodin_jupyter.balance.monitor import BalanceMonitor
    from rodin_jupyter.http import colab_key

    monkeypatch.setattr(colab_key, "SECRET_WAIT", 0.5)
    colab.set(RODIN_API_KEY={"value": FAKE_KEY, "access": True, "hang": True})
    monitor = BalanceMonitor()
    outcome: list[BaseException] = []

    def read() -> None:
        try:
            monitor.refresh()
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    time.sleep(0.1)
    monitor.snapshot()  # not blocked by the lookup in the other thread
    assert time.monotonic() - started < 0.45
    worker.join(10)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], MissingKeyError)
    assert "did not answer within 0.5 s" in str(outcome[0]) and FAKE_KEY not in str(outcome[0])
