"""The preview object and the inputs of generate(), without a browser."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter.errors import RodinError
from rodin_jupyter.generation import generate, settings
from rodin_jupyter.generation.files import check_glb
from rodin_jupyter.generation.poller import get_poller
from rodin_jupyter.generation.preview import Preview
from rodin_jupyter.generation.submit import build_fields, image_item
from rodin_jupyter.generation.viewer import viewer_html
from rodin_jupyter.sandbox import Sandbox
from rodin_jupyter.sandbox.glb import triangle_glb

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
WEBP = b"RIFF\x10\0\0\0WEBPVP8 " + b"\0" * 16


def test_the_preview_shows_the_image_and_the_model(tmp_path: Path) -> None:
    model = tmp_path / "model.glb"
    model.write_bytes(triangle_glb())
    image = tmp_path / "preview.webp"
    image.write_bytes(WEBP)
    bundle = Preview([model, image], title="task abc")._repr_mimebundle_()
    assert "model.glb" in bundle["text/plain"] and "preview.webp" in bundle["text/plain"]
    page = bundle["text/html"]
    assert 'src="data:image/webp;base64,' in page
    assert 'class="rodin-glb-canvas"' in page and "rodinGlbView" in page
    assert "cdn" not in page.lower() and "https://" not in page  # no network


def test_a_model_over_the_embed_limit_is_a_line(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "model.glb"
    model.write_bytes(triangle_glb())
    monkeypatch.setattr(settings, "max_embed_bytes", 100)
    page = Preview([model]).html()
    assert "preview limit" in page and "rodin-glb-canvas" not in page


def test_the_viewer_fragment_cannot_be_broken_out_of() -> None:
    page = viewer_html(triangle_glb(), element_id='x"><b>',
                       caption="model.glb </script><b id='inj'>x</b>")
    assert page.count("</script>") == 1 and "<b id='inj'>" not in page


def test_check_glb_reads_the_header(tmp_path: Path) -> None:
    good = tmp_path / "good.glb"
    good.write_bytes(triangle_glb())
    check_glb(good)
    short = tmp_path / "short.glb"
    short.write_bytes(b"glTF" + struct.pack("<II", 2, 10_000))
    with pytest.raises(RodinError, match="not a valid glTF 2"):
        check_glb(short)


def test_images_from_paths_bytes_and_pil_like_objects(tmp_path: Path) -> None:
    path = tmp_path / "front.png"
    path.write_bytes(PNG)

    class FakePil:  # the one method generate() uses
        def save(self, out: Any, format: str) -> None:
            out.write(PNG)

    assert image_item(path, 0) == ("front.png", PNG, "image/png")
    assert image_item(PNG, 1) == ("image1.png", PNG, "image/png")
    assert image_item(FakePil(), 2)[1:] == (PNG, "image/png")
    with pytest.raises(RodinError, match="give a path"):
        image_item(3.5, 0)
    with pytest.raises(RodinError, match="Could not read"):
        image_item(tmp_path / "missing.png", 0)


def test_fields_travel_as_the_service_takes_them() -> None:
    fields = build_fields("a chair", "Gen-2", ["HighPack"],
                          {"bbox_condition": [1, 2, 3], "preview_render": True, "seed": 7,
                           "material": None})
    assert fields == {"prompt": "a chair", "tier": "Gen-2", "addons": '["HighPack"]',
                      "bbox_condition": "[1, 2, 3]", "preview_render": "true", "seed": "7"}


def test_an_image_only_generation_goes_out_as_multipart(sandbox_env: Sandbox,
                                                        fresh_monitor: Any) -> None:
    try:
        job = generate(images=[PNG, PNG], watch=False)
    finally:
        get_poller().shutdown()
    assert job.task_uuid and len(sandbox_env.charges) == 1
    with pytest.raises(RodinError, match="prompt or at least one image"):
        generate()
    with pytest.raises(RodinError, match="At most 5"):
        generate(images=[PNG] * 6)
