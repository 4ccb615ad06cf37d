"""Small but well-formed files for every geometry format the service offers, and a preview.

Each is the same one triangle as :func:`triangle_glb`, so a downloaded model opens in a real
viewer whatever ``geometry_file_format`` asked for.
"""

from __future__ import annotations

import base64
import functools
import io
import zipfile
from collections.abc import Callable

from .glb import TRIANGLE, triangle_glb

PREVIEW_NAME = "preview.webp"
# A 1x1 lossless WebP (RIFF/WEBP/VP8L), valid for browsers and image libraries.
_WEBP_1X1 = "UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA=="
CONTENT_TYPES: dict[str, str] = {
    "glb": "model/gltf-binary",
    "usdz": "model/vnd.usdz+zip",
    "fbx": "application/octet-stream",
    "obj": "model/obj",
    "stl": "model/stl",
    "webp": "image/webp",
}


def preview_webp() -> bytes:
    return base64.b64decode(_WEBP_1X1)


def _obj() -> bytes:
    lines = [f"v {x} {y} {z}" for x, y, z in TRIANGLE] + ["f 1 2 3", ""]
    return "\n".join(["# rodin-jupyter sandbox", *lines]).encode("ascii")


def _stl() -> bytes:
    vertices = "\n".join(f"      vertex {x} {y} {z}" for x, y, z in TRIANGLE)
    return (f"solid sandbox\n  facet normal 0 0 1\n    outer loop\n{vertices}\n"
            "    endloop\n  endfacet\nendsolid sandbox\n").encode("ascii")


def _fbx() -> bytes:
    points = ",".join(f"{c}" for vertex in TRIANGLE for c in vertex)
    return ("; FBX 7.4.0 project file\nFBXHeaderExtension:  {\n FBXVersion: 7400\n}\n"
            "Objects:  {\n Geometry: 1, \"Geometry::sandbox\", \"Mesh\" {\n"
            f"  Vertices: *9 {{\n   a: {points}\n  }}\n"
            "  PolygonVertexIndex: *3 {\n   a: 0,1,-3\n  }\n }\n}\n").encode("ascii")


def _usdz() -> bytes:
    points = ", ".join(f"({x}, {y}, {z})" for x, y, z in TRIANGLE)
    usda = ("#usda 1.0\n\ndef Mesh \"sandbox\"\n{\n    int[] faceVertexCounts = [3]\n"
            f"    int[] faceVertexIndices = [0, 1, 2]\n    point3f[] points = [{points}]\n}}\n")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # USDZ: stored, no zlib
        info = zipfile.ZipInfo("model.usda", date_time=(2026, 1, 1, 0, 0, 0))
        archive.writestr(info, usda)
    return buffer.getvalue()


@functools.cache
def model_file(fmt: str) -> bytes:
    """The sandbox's model in ``fmt`` (one of the documented geometry formats)."""
    builders: dict[str, Callable[[], bytes]] = {
        "glb": triangle_glb, "obj": _obj, "stl": _stl, "fbx": _fbx, "usdz": _usdz}
    return builders[fmt]()


def file_bytes(name: str) -> tuple[bytes, str] | None:
    """Bytes and content type for a listed file name (``model.<fmt>`` or the preview)."""
    if name == PREVIEW_NAME:
        return preview_webp(), CONTENT_TYPES["webp"]
    stem, _, fmt = name.rpartition(".")
    if stem != "model" or fmt not in CONTENT_TYPES or fmt == "webp":
        return None
    return model_file(fmt), CONTENT_TYPES[fmt]
