"""generate() in a real browser: the live progress view reaches Done, the 3D view draws.

JupyterLab 4 and Notebook 7 against the sandbox; a screenshot of each run is saved in
``artifacts/`` whether the test passes or not.
"""

from __future__ import annotations

from typing import Any

import pytest

from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY

from .conftest import ARTIFACTS, JupyterServer, open_and_run, save_notebook, write_notebook

pytestmark = pytest.mark.browser

CELLS = [
    "%load_ext rodin_jupyter",
    "from rodin_jupyter import generate\n"
    "from rodin_jupyter.generation import settings\n"
    "settings.poll_interval = 0.3\n"
    "job = generate(prompt='a small wooden chair', tier='Gen-2')\n"
    "job",
    "job.wait(timeout=60)\njob.preview('models')",
]
OUTPUT = ".jp-OutputArea-output"

# Copies the viewer's canvas (WebGL with preserveDrawingBuffer, or Canvas2D) into a 2D
# canvas and counts the pixels that differ from the background in the corner.
COUNT_DRAWN = """(canvas) => {
  const copy = document.createElement('canvas');
  copy.width = canvas.width; copy.height = canvas.height;
  const ctx = copy.getContext('2d');
  ctx.drawImage(canvas, 0, 0);
  const d = ctx.getImageData(0, 0, copy.width, copy.height).data;
  let drawn = 0;
  for (let i = 0; i < d.length; i += 4) {
    const diff = Math.max(Math.abs(d[i] - d[0]), Math.abs(d[i + 1] - d[1]),
                          Math.abs(d[i + 2] - d[2]));
    if (diff > 24) drawn++;
  }
  return drawn;
}"""


def test_progress_reaches_done_and_the_model_draws(page: Any, jupyter: JupyterServer,
                                                   sandbox: Sandbox) -> None:
    from playwright.sync_api import expect

    sandbox.job_seconds = 2.0  # long enough to see the view move on
    sent_before = sandbox.count("POST", "/rodin")  # the sandbox is shared by the module
    try:
        name = write_notebook(jupyter, CELLS)
        open_and_run(page, jupyter, name)
        view = page.locator(f"{OUTPUT} .rodin-jobs-view").first
        expect(view).to_be_visible(timeout=60_000)
        state = view.locator(".rodin-job-state").first
        expect(state).to_have_text("Done", timeout=60_000)  # the widget, updated live
        canvas = page.locator(f"{OUTPUT} canvas.rodin-glb-canvas").first
        expect(canvas).to_have_attribute("data-rodin-viewer", "ready", timeout=60_000)
        image = page.locator(f"{OUTPUT} img.rodin-preview-image").first
        expect(image).to_be_visible()  # the service's preview.webp, inlined
        assert image.evaluate("(img) => img.complete && img.naturalWidth > 0")
        drawn = canvas.evaluate(COUNT_DRAWN)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"generate-{jupyter.kind}.png"), full_page=True)
        assert drawn > 500, f"the 3D view drew only {drawn} pixels"
        save_notebook(page)
        saved = (jupyter.root / name).read_text()
        assert FAKE_KEY not in saved and FAKE_KEY not in page.content()
        assert sandbox.count("POST", "/rodin") == sent_before + 1
    finally:
        sandbox.job_seconds = 0.3
