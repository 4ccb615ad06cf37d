"""The benchmark script still runs (``--quick``), prints its table, and counts requests exactly.

Timings on a CI machine mean little, so no ratio is asserted here; only what must hold
exactly: how many requests each figure sent, and that ipywidgets stays out of the import.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import environ_without_keys

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "run.py"

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None and importlib.util.find_spec("cryptography") is None,
    reason="needs openssl or cryptography to make the benchmark's certificate",
)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench") / "report.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        cwd=ROOT, env=environ_without_keys(), capture_output=True, text=True, timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


def by_id(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in report["results"]}


def test_prints_the_table_and_the_machine(quick_run: tuple[str, dict[str, Any]]) -> None:
    stdout, report = quick_run
    assert "Machine:" in stdout
    header = next(line for line in stdout.splitlines() if line.startswith("#"))
    assert header.split() == ["#", "figure", "measured", "goal", "result"]
    for result in report["results"]:
        assert result["figure"] in stdout
        assert result["status"] in ("pass", "miss", "info", "n/a")
    numbers = [r["number"] for r in report["results"]]
    assert numbers == ["1", "1b", "2", "2b", "3", "4", "5a", "5b", "5c", "6"]
    assert report["quick"] is True
    assert report["machine"]["cores"] >= 1


def test_the_magic_reuses_one_connection(quick_run: tuple[str, dict[str, Any]]) -> None:
    details = by_id(quick_run[1])["balance_vs_snippet"]["details"]
    assert details["magic_requests"] == details["calls_per_side"]  # no caching without --cached
    assert details["magic_new_connections"] == 0  # warm: the kept-alive connection serves all


def test_guard_sends_nothing_for_ordinary_cells(quick_run: tuple[str, dict[str, Any]]) -> None:
    results = by_id(quick_run[1])
    if results["guard_cost"]["status"] == "n/a":
        pytest.skip(results["guard_cost"]["text"])
    for id_ in ("guard_cost", "guard_cost_mention"):  # past the text gate or not: no request
        assert results[id_]["details"]["requests"] == 0
        assert results[id_]["details"]["cells_per_side"] > 0
    assert not any("cells failed" in note for note in results["guard_cost"]["notes"])


def test_import_leaves_ipywidgets_alone(quick_run: tuple[str, dict[str, Any]]) -> None:
    details = by_id(quick_run[1])["import"]["details"]
    assert details["ipywidgets_after_import"] is False
    assert details["ipywidgets_after_load_ext"] is False
    assert "rodin_balance" in details["line_magics"]


def test_ten_panels_one_refresh_one_request(quick_run: tuple[str, dict[str, Any]]) -> None:
    panels = by_id(quick_run[1])["panels"]
    if panels["status"] == "n/a":
        pytest.skip(panels["text"])
    details = panels["details"]
    assert details["requests_on_create"] == 1
    assert details["requests_on_refresh"] == 1
    assert details["all_panels_show_new_balance"] is True


def test_cached_reads_send_nothing(quick_run: tuple[str, dict[str, Any]]) -> None:
    results = by_id(quick_run[1])
    ids = ["cached_magic", "cached_read"]
    if results["cached_guard"]["status"] != "n/a":
        ids.append("cached_guard")
    for id_ in ids:
        assert results[id_]["details"]["requests"] == 0
        assert results[id_]["measured"] > 0


# -- many kernels on one account: one poll ---------------------------------------------------

KERNELS = 10
INTERVAL = 2.0
WINDOW = 12.0


def test_ten_kernels_with_auto_refreshing_panels_poll_about_once_per_interval(
        tmp_path: Path) -> None:
    """Ten real kernels, each with a panel auto-refreshing every 2 s (the test-only floor),
    against one sandbox: the service sees about one request per interval between them, not
    ten. A count bound, not a timing: under load a refresh may come late, never double."""
    pytest.importorskip("ipywidgets")
    pytest.importorskip("jupyter_client")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from kernels import run_kernels
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from rodin_jupyter.sandbox import Sandbox
    from tests.conftest import FAKE_KEY

    with Sandbox(balance="10", api_key=FAKE_KEY) as sandbox:
        run = run_kernels(KERNELS, WINDOW, INTERVAL, base_url=sandbox.base_url, key=FAKE_KEY,
                          runtime_dir=str(tmp_path / "runtime"),
                          count=lambda: sandbox.count("GET", "/check_balance"))
    intervals = WINDOW / INTERVAL  # 6
    assert run.setup_requests <= 5, run  # ten panels opening share the first reading
    assert 1 <= run.requests <= 1.5 * intervals + 2, run  # one kernel alone makes ~6; ten, not 60
