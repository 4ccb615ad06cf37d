"""What ``job.preview()`` returns: the service's preview image and a 3D view of the GLB.

A plain object with ``_repr_mimebundle_``: JupyterLab 4 and Notebook 7 render the HTML (an
inline, packaged viewer: no network beyond the kernel), anything else shows the text line.
"""

from __future__ import annotations

import base64
import html
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rodin_jupyter.generation.settings import settings
from rodin_jupyter.generation.viewer import viewer_html

IMAGE_TYPES = {".webp": "image/webp", ".png": "image/png", ".jpg": "image/jpeg",
               ".jpeg": "image/jpeg"}
MAX_IMAGE_BYTES = 8 << 20


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / (1 << 20):.1f} MB" if size >= 1 << 20 else f"{max(1, size >> 10)} KB"


class Preview:
    """The preview image (when the list has one) and the model, for display."""

    def __init__(self, paths: Sequence[Path], title: str = "") -> None:
        self.paths = [Path(p) for p in paths]
        self.title = title
        self.model = next((p for p in self.paths if p.suffix.lower() == ".glb"), None)
        self.image = next((p for p in self.paths if p.suffix.lower() in IMAGE_TYPES
                           and "preview" in p.stem.lower()), None) or next(
            (p for p in self.paths if p.suffix.lower() in IMAGE_TYPES), None)

    def text(self) -> str:
        parts = [f"{p.name} ({_size(p)}) at {p.parent}" for p in (self.model, self.image) if p]
        if not parts:
            names = ", ".join(p.name for p in self.paths) or "no files"
            return f"Preview of {self.title}: no GLB or preview image ({names})."
        return f"Preview of {self.title}: " + "; ".join(parts)

    def html(self) -> str:
        blocks: list[str] = []
        if self.image is not None and self.image.stat().st_size <= MAX_IMAGE_BYTES:
            data = base64.b64encode(self.image.read_bytes()).decode("ascii")
            kind = IMAGE_TYPES[self.image.suffix.lower()]
            blocks.append(f'<img class="rodin-preview-image" alt="{html.escape(self.image.name)}"'
                          f' src="data:{kind};base64,{data}" '
                          'style="width:240px;height:auto;image-rendering:auto;'
                          'margin-right:8px;border:1px solid #ccc">')
        if self.model is not None:
            size = self.model.stat().st_size
            if size > settings.max_embed_bytes:
                blocks.append(f'<div class="rodin-preview-note">{html.escape(self.model.name)} is '
                              f"{_size(self.model)}, over the "
                              f"{settings.max_embed_bytes >> 20} MB preview limit: open "
                              f"{html.escape(str(self.model))} in a 3D viewer.</div>")
            else:
                blocks.append(viewer_html(self.model.read_bytes(),
                                          element_id=f"rodin-glb-{uuid.uuid4().hex[:12]}",
                                          caption=f"{self.model.name} ({_size(self.model)}): "
                                                  "drag to orbit, wheel to zoom"))
        if not blocks:
            return f"<div>{html.escape(self.text())}</div>"
        return ('<div class="rodin-preview" style="display:flex;flex-wrap:wrap;'
                f'align-items:flex-start">{"".join(blocks)}</div>')

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None,
                          **kwargs: Any) -> dict[str, Any]:
        return {"text/plain": self.text(), "text/html": self.html()}
