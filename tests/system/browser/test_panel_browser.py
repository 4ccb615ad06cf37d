"""The balance panel in a real browser: JupyterLab 4 and Notebook 7 against the sandbox.

One server per frontend and few kernels: each test opens one notebook and checks many
things on it, in the Light and Dark themes at 1280 px and 500 px. Screenshots of every
state in both themes go to the artifacts folder (RODIN_ARTIFACTS, else ./artifacts).
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY

from .conftest import (
    ARTIFACTS,
    START_BALANCE,
    JupyterServer,
    open_and_run,
    run_cell,
    save_notebook,
    write_notebook,
)
from .measure import error_lines, low_contrast, measure, set_theme

pytestmark = pytest.mark.browser

KEY_MESSAGE = ("No Rodin API key: set RODIN_API_KEY (or HYPER3D_API_KEY) in the environment "
               "before starting Jupyter; never paste the key into a cell.")
CARDS = f'''
import time
from datetime import datetime, timezone
from decimal import Decimal
from IPython.display import HTML, display
from rodin_jupyter.balance.monitor import Snapshot
from rodin_jupyter.balance.text import view_html
from rodin_jupyter.balance.view import balance_view

def card(balance, **kw):
    value = None if balance is None else Decimal(balance)
    known = value is not None
    display(HTML(view_html(balance_view(Snapshot(
        balance=value, checked_at=datetime.now(timezone.utc) if known else None,
        checked_monotonic=time.monotonic() if known else None, **kw)))))

for balance, extra in [("10", {{}}), ("3", {{}}), ("0.2", {{}}), ("10", {{"error": "down"}}),
                       ("10", {{"checking": True}}), (None, {{}}),
                       (None, {{"error": {KEY_MESSAGE!r}}})]:
    card(balance, **extra)
'''
PANEL_CELLS = [
    "%load_ext rodin_jupyter",
    "%rodin_balance --panel",
    'ran = globals().get("ran", 0) + 1\nprint(f"cell ran {ran} time(s)")',
    CARDS,
    # Run All skips it; running the cell again opens the panel in the side area.
    'side = globals().get("side", 0) + 1\nif side > 1:\n'
    '    get_ipython().run_line_magic("rodin_balance", "--sidecar")',
]
SIDECAR_CELL = 4
OUTPUT = ".jp-Notebook .jp-OutputArea-output"
STDERR = '[data-mime-type="application/vnd.jupyter.stderr"]'
PANEL = f"{OUTPUT} .rodin-panel"
THEMES = {"light": "JupyterLab Light", "dark": "JupyterLab Dark"}
WIDTHS = (1280, 500)
CLOCK = re.compile(r"\d\d:\d\d:\d\d")
COLLAPSE_LEFT = "() => { const s = window.jupyterapp.shell; if (s.collapseLeft) s.collapseLeft(); }"


KERNEL_GONE_JS = """() => {
  const box = document.querySelector('.jp-Notebook .rodin-panel');
  const line = box.classList.contains('jupyter-widgets-disconnected')
    ? getComputedStyle(box, '::before').content : '';
  const icons = Array.from(box.querySelectorAll('.jupyter-widgets-disconnected'))
    .filter(el => getComputedStyle(el, '::before').display !== 'none').length;
  return {line, icons};
}"""


def amount(value: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*{re.escape(value)}\s+credits\s*$")


def open_panel(page: Any, jupyter: JupyterServer, cells: list[str]) -> tuple[Any, str]:
    from playwright.sync_api import expect

    name = write_notebook(jupyter, cells)
    open_and_run(page, jupyter, name)
    panel = page.locator(PANEL).first
    expect(panel.locator(".rodin-amount")).to_have_text(amount(START_BALANCE), timeout=60_000)
    expect(panel.locator(".rodin-state")).to_have_text("ok")
    expect(page.locator(OUTPUT).filter(has_text="cell ran 1 time(s)")).to_be_visible()
    return panel, name


def check_everywhere(page: Any, jupyter: JupyterServer, state: str) -> None:
    """Contrast, boxes and a screenshot of the panel and the cards, per theme and width."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for theme, theme_name in THEMES.items():
        set_theme(page, theme_name)
        for width in WIDTHS:
            page.set_viewport_size({"width": width, "height": 900})
            page.wait_for_timeout(300)
            where = f"{jupyter.kind} {theme} {width}px {state}"
            panel = measure(page, PANEL)
            cards = measure(page, f"{OUTPUT} .rodin-balance")
            assert panel["roots"] >= 1 and cards["roots"] >= 7, where
            for found in (panel, cards):
                problems += [f"{where}: {t}" for t in low_contrast(found)]
                problems += [f"{where}: overflow {b}" for b in found["boxes"]]
            page.locator(PANEL).first.screenshot(
                path=str(ARTIFACTS / f"panel-{jupyter.kind}-{theme}-{width}-{state}.png"))
            if state == "ok":
                cards_cell = page.locator(".jp-Notebook .jp-Cell").nth(3)
                cards_cell.locator(".jp-Cell-outputArea").screenshot(
                    path=str(ARTIFACTS / f"cards-{jupyter.kind}-{theme}-{width}.png"))
                for line in error_lines(page, f"{OUTPUT} .rodin-error"):
                    if "API key" in line["text"]:
                        assert KEY_MESSAGE in line["text"], (where, line)
                        assert not line["clipped"], (where, line)
    set_theme(page, THEMES["light"])
    page.set_viewport_size({"width": 1280, "height": 900})
    assert problems == [], "\n".join(problems[:20])


def test_every_state_reads_in_both_themes_at_any_width(page: Any, jupyter: JupyterServer,
                                                       sandbox: Sandbox) -> None:
    from playwright.sync_api import expect

    panel, _name = open_panel(page, jupyter, PANEL_CELLS)
    page.evaluate(COLLAPSE_LEFT)  # the file browser would take half of 500 px
    refresh = panel.locator(".rodin-panel-refresh")
    expect(panel.locator(".rodin-age")).to_contain_text("checked")
    expect(panel.locator(".rodin-spent")).to_have_text("spent here: 0")
    check_everywhere(page, jupyter, "ok")

    # A drop that happened elsewhere (42 -> 17.25) is not "spent here".
    before = sandbox.count("GET", "/check_balance")
    for balance, state in (("17.25", "ok"), ("3", "low"), ("0.2", "too low")):
        sandbox.set_balance(balance)
        refresh.click()
        expect(panel.locator(".rodin-amount")).to_have_text(amount(balance))
        expect(panel.locator(".rodin-state")).to_have_text(state)
        expect(panel.locator(".rodin-spent")).to_have_text("spent here: 0")
        if state != "ok":
            check_everywhere(page, jupyter, state.replace(" ", "-"))
    assert sandbox.count("GET", "/check_balance") == before + 3

    sandbox.inject_fault(path="/check_balance", status=503, times=None)
    refresh.click()
    expect(panel.locator(".rodin-stale")).to_be_visible(timeout=30_000)
    expect(panel.locator(".rodin-state")).to_have_text("error")
    error = panel.locator(".rodin-error")
    expect(error).to_contain_text("unavailable (HTTP 503)")
    assert "\n" not in error.inner_text().strip()
    expect(panel.locator(".rodin-amount")).to_have_text(amount("0.2"))  # kept, dimmed
    expect(refresh).to_be_enabled()
    check_everywhere(page, jupyter, "error")
    for line in error_lines(page, f"{PANEL} .rodin-error"):
        assert not line["clipped"], line
    assert "Traceback" not in page.content()
    assert page.locator(STDERR).count() == 0

    # Checking: the number dimmed, the button says so, the old error hidden; the kernel
    # stays free for other cells meanwhile.
    sandbox.clear_faults()
    sandbox.set_balance("43")
    sandbox.inject_fault(path="/check_balance", status=None, delay=12)
    refresh.click()
    expect(panel.locator(".rodin-state")).to_have_text("checking", timeout=3_000)
    expect(refresh).to_be_disabled()
    expect(refresh).to_contain_text("Checking…")
    expect(panel.locator(".rodin-error")).to_have_count(0)
    expect(panel.locator(".rodin-amount.rodin-dim")).to_have_count(1)
    start = time.monotonic()
    run_cell(page, 2)
    expect(page.locator(OUTPUT).filter(has_text="cell ran 2 time(s)")).to_be_visible(
        timeout=4_000)
    assert time.monotonic() - start < 3.5
    check_everywhere(page, jupyter, "checking")
    expect(panel.locator(".rodin-amount")).to_have_text(amount("43"), timeout=30_000)
    expect(panel.locator(".rodin-state")).to_have_text("ok")
    expect(refresh).to_contain_text("Refresh")

    if jupyter.kind == "lab":
        run_cell(page, SIDECAR_CELL)
        sidecar_output = page.locator(OUTPUT).filter(has_text="rodin_jupyter:")
        expect(sidecar_output.first).to_be_visible()
        if "side area" in sidecar_output.first.inner_text():
            # The panel lives outside the notebook, in Lab's side area.
            page.wait_for_function("""() => Array.from(document.querySelectorAll('.rodin-panel'))
                .some(el => !el.closest('.jp-Notebook'))""", timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "sidecar-lab.png"))
        else:
            expect(sidecar_output.first).to_contain_text("Create New View for Output")


def test_a_saved_notebook_keeps_the_clock_time_and_no_key(page: Any, jupyter: JupyterServer,
                                                          sandbox: Sandbox) -> None:
    from playwright.sync_api import expect

    _panel, name = open_panel(page, jupyter, PANEL_CELLS[:3])
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
    for static in (fallbacks[0]["text/html"], fallbacks[0]["text/plain"]):
        assert CLOCK.search("".join(static)) and "just now" not in "".join(static)

    # Closed and opened again with no kernel behind the old output: a clock time shows.
    page.goto("about:blank")
    jupyter.shutdown_sessions()
    page.goto(jupyter.notebook_url(name))
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    shown = page.locator(OUTPUT).filter(has_text="Rodin balance").first
    expect(shown).to_be_visible(timeout=30_000)
    expect(shown).to_contain_text(CLOCK)
    if shown.locator(".rodin-panel").count():  # Lab restored the saved widget state
        gone = page.evaluate(KERNEL_GONE_JS)
        assert "No kernel is connected" in gone["line"], gone
        assert gone["icons"] == 0, gone  # one line, not a broken-link icon per widget
        assert " ago" not in shown.inner_text()  # the live age was true only while live
        assert shown.locator(".rodin-panel-refresh").is_hidden()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"reopened-{jupyter.kind}.png"))
