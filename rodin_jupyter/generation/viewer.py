"""A self-contained HTML fragment that shows a GLB with the packaged ``glb_viewer.js``.

Everything is inlined (viewer JS + base64 model), so the fragment works offline, with no
CDN, inside Jupyter ``text/html`` outputs (JupyterLab 4, Notebook 7: session outputs are
trusted, so their inline script runs).
"""
from __future__ import annotations

import base64
import functools
import html
import json
import re
from importlib import resources

__all__ = ["script_safe_js", "viewer_html", "viewer_js"]

_SCRIPT_BREAKERS = re.compile(r"<(/script|!--)", re.IGNORECASE)


@functools.cache
def viewer_js() -> str:
    """The viewer's source, shipped as package data (``generation/static/glb_viewer.js``)."""
    return (resources.files("rodin_jupyter.generation") / "static" / "glb_viewer.js").read_text(
        encoding="utf-8")


def script_safe_js(js: str) -> str:
    """Make JavaScript source safe to inline inside a ``<script>`` element.

    The HTML tokenizer ends a script element at ``</script`` (any case), and
    ``<!--`` followed by ``<script`` enters the "double escaped" state that
    can swallow the real end tag.  Writing ``<\\/script`` and ``<\\!--``
    keeps the meaning inside JS string/template literals, comments and
    (non-``u``) regex literals, while the tokenizer no longer sees either.
    ``<script`` alone is harmless once every ``<!--`` is neutralised.
    """
    return _SCRIPT_BREAKERS.sub(lambda m: "<\\" + m.group(1), js)


def _js_string(value: str) -> str:
    """A JSON/JS string literal that is also safe inside <script> and HTML."""
    s = json.dumps(value)
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def viewer_html(
    glb: bytes,
    *,
    element_id: str,
    width: int = 480,
    height: int = 360,
    js: str | None = None,
    caption: str = "",
) -> str:
    """Return an HTML fragment: a canvas, a caption line and an inline script.

    ``js`` is the text of glb_viewer.js (it defines ``rodinGlbView`` once per
    page).  The script looks up its own canvas through ``document.currentScript``
    (robust against duplicated ids when the same output is shown twice) and
    falls back to ``document.getElementById(element_id)``.
    """
    js = viewer_js() if js is None else js
    if not isinstance(glb, (bytes, bytearray, memoryview)):
        raise TypeError("glb must be bytes")
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    b64 = base64.b64encode(bytes(glb)).decode("ascii")  # [A-Za-z0-9+/=] only: safe
    attr_id = html.escape(element_id, quote=True)
    js_id = _js_string(element_id)
    call = (
        "(function(){var s=document.currentScript;"
        "var c=(s&&s.parentNode&&s.parentNode.querySelector('canvas.rodin-glb-canvas'))"
        "||document.getElementById(" + js_id + ");"
        "var n=s&&s.parentNode&&s.parentNode.querySelector('.rodin-glb-nojs');"
        "if(n)n.parentNode.removeChild(n);"
        "if(typeof rodinGlbView!=='function'){"
        "if(c)c.dataset.rodinViewer='error: viewer script failed to load';return;}"
        'rodinGlbView(c,"' + b64 + '");})();'
    )
    return (
        '<div class="rodin-glb-viewer" style="display:inline-block">'
        f'<canvas id="{attr_id}" class="rodin-glb-canvas" width="{width}" height="{height}" '
        f'style="width:{width}px;height:{height}px;border:1px solid #ccc;display:block"></canvas>'
        '<div class="rodin-glb-nojs" style="font:12px sans-serif;line-height:1.4;color:#888">'
        "3D view needs JavaScript (trust the notebook or re-run the cell).</div>"
        '<div class="rodin-glb-caption" style="font:12px sans-serif;line-height:1.4;color:#555;'
        f'padding-top:2px">{html.escape(caption, quote=True)}</div>'
        f"<script>\n{script_safe_js(js)}\n;{call}</script>"
        "</div>"
    )
