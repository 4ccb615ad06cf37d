"""The balance panel in a real browser: JupyterLab 4 and Notebook 7 against the sandbox."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from rodin_jupyter.sandbox import Sandbox

from ..conftest import FAKE_KEY
from .conftest import (
    ARTIFACTS,
    START_BALANCE,
    JupyterServer,
    open_and_run,
    run_cell,
    save_notebook,
    write_notebook,
)

pytestmark = pytest.mark.browser

PANEL_CELLS = [
    "%load_ext rodin_jupyter",
    "%rodin_balance --panel",
    'ran = globals().get("ran", 0) + 1\nprint(f"cell ran {ran} time(s)")',
]
OUTPUT = ".jp-OutputArea-output"
STDERR = '[data-mime-type="application/vnd.jupyter.stderr"]'


def amount(value: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(value)}\s+credits\s*$")


def panel_of(page: Any) -> Any:
    # Scoped to outputs: Lab's own UI has refresh buttons too.
    return page.locator(f"{OUTPUT} .rodin-panel")


def open_panel(page: Any, jupyter: JupyterServer) -> tuple[Any, str]:
    from playwright.sync_api import expect

    name = write_notebook(jupyter, PANEL_CELLS)
    open_and_run(page, jupyter, name)
    panel = panel_of(page)
    expect(panel.locator(".rodin-panel-balance")).to_have_text(amount(START_BALANCE),
                                                               timeout=60_000)
    expect(panel.locator(".rodin-panel-state")).to_have_text("ok")
    expect(page.locator(OUTPUT).filter(has_text="cell ran 1 time(s)")).to_be_visible()
    return panel, name


def test_panel_shows_refreshes_and_survives_errors(page: Any, jupyter: JupyterServer,
                                                   sandbox: Sandbox) -> None:
    from playwright.sync_api import expect

    panel, _name = open_panel(page, jupyter)
    expect(panel.locator(".rodin-panel-age")).to_contain_text("checked")
    expect(panel.locator(".rodin-panel-spent")).to_contain_text("spent this session: 0")
    refresh = panel.get_by_role("button", name="Refresh")
    expect(refresh).to_be_enabled()

    sandbox.set_balance("17.25")
    before = sandbox.count("GET", "/check_balance")
    refresh.click()
    expect(panel.locator(".rodin-panel-balance")).to_have_text(amount("17.25"))
    expect(panel.locator(".rodin-panel-spent")).to_contain_text("spent this session: 24.75")
    assert sandbox.count("GET", "/check_balance") == before + 1
    ARTIFACTS.mkdir(exist_ok=True)
    panel.screenshot(path=str(ARTIFACTS / f"balance-panel-{jupyter.kind}-ok.png"))

    sandbox.inject_fault(path="/check_balance", status=503, times=None)
    refresh.click()
    expect(panel.locator(".rodin-stale")).to_be_visible(timeout=30_000)
    expect(panel.locator(".rodin-panel-state")).to_have_text("error")
    error = panel.locator(".rodin-panel-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("unavailable (HTTP 503)")
    assert "\n" not in error.inner_text().strip()
    expect(panel.locator(".rodin-panel-balance")).to_have_text(amount("17.25"))  # kept
    expect(refresh).to_be_enabled()
    panel.screenshot(path=str(ARTIFACTS / f"balance-panel-{jupyter.kind}.png"))
    assert "Traceback" not in page.content()
    assert page.locator(STDERR).count() == 0

    sandbox.clear_faults()
    refresh.click()
    expect(panel.locator(".rodin-panel-state")).to_have_text("ok")
    expect(panel.locator(".rodin-stale")).to_have_count(0)
    expect(error).to_be_hidden()


def test_kernel_stays_responsive_during_a_slow_refresh(page: Any, jupyter: JupyterServer,
                                                       sandbox: Sandbox) -> None:
    from playwright.sync_api import expect

    panel, _name = open_panel(page, jupyter)
    sandbox.set_balance("43")
    sandbox.inject_fault(path="/check_balance", status=None, delay=5)
    panel.get_by_role("button", name="Refresh").click()
    state = panel.locator(".rodin-panel-state")
    expect(state).to_have_text("checking", timeout=3_000)
    expect(panel.get_by_role("button", name="Refresh")).to_be_disabled()
    start = time.monotonic()
    run_cell(page, 2)
    expect(page.locator(OUTPUT).filter(has_text="cell ran 2 time(s)")).to_be_visible(
        timeout=4_000)
    elapsed = time.monotonic() - start
    assert elapsed < 3.5, f"the cell took {elapsed:.1f} s during a 5 s refresh"
    assert state.inner_text().strip() == "checking"  # the slow answer is still awaited
    expect(panel.locator(".rodin-panel-balance")).to_have_text(amount("43"), timeout=15_000)
    expect(state).to_have_text("ok")


def test_saved_widget_state_holds_no_key(page: Any, jupyter: JupyterServer,
                                         sandbox: Sandbox) -> None:
    _panel, name = open_panel(page, jupyter)
    path = jupyter.root / name
    save_notebook(page)
    deadline = time.monotonic() + 15
    while True:
        text = path.read_text()
        widgets = json.loads(text).get("metadata", {}).get("widgets", {})
        state = widgets.get("application/vnd.jupyter.widget-state+json", {}).get("state")
        if state or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert state, "the notebook was saved without widget state"
    assert "rodin-panel" in json.dumps(state)  # the panel's widgets are in the file...
    assert FAKE_KEY not in text  # ...and the key is nowhere in it
    assert "Bearer" not in text
    outputs = [output for cell in json.loads(text)["cells"] for output in cell.get("outputs", [])]
    fallbacks = [o["data"] for o in outputs
                 if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert fallbacks and "rodin-balance" in "".join(fallbacks[0]["text/html"])
    assert "Rodin balance: 42 credits" in "".join(fallbacks[0]["text/plain"])
