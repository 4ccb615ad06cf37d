"""A tiny but valid binary glTF 2.0 (GLB) file, so sandbox downloads open in real viewers."""

from __future__ import annotations

import functools
import json
import struct

GLB_MAGIC = b"glTF"
GLB_VERSION = 2
CHUNK_JSON = 0x4E4F534A  # "JSON" little-endian
CHUNK_BIN = 0x004E4942  # "BIN\0" little-endian

# One triangle in the XY plane, counter-clockwise seen from +Z.
TRIANGLE: tuple[tuple[float, float, float], ...] = (
    (0.0, 0.0, 0.0),
    (1.0, 0.0, 0.0),
    (0.0, 1.0, 0.0),
)


def _pad(data: bytes, fill: bytes) -> bytes:
    """Pad to a multiple of 4 bytes, as the GLB spec requires for every chunk."""
    return data + fill * (-len(data) % 4)


@functools.cache
def triangle_glb() -> bytes:
    """Build (once) a GLB holding a single triangle mesh with POSITION min/max set."""
    positions = b"".join(struct.pack("<3f", *vertex) for vertex in TRIANGLE)
    mins = [min(v[i] for v in TRIANGLE) for i in range(3)]
    maxs = [max(v[i] for v in TRIANGLE) for i in range(3)]
    document = {
        "asset": {"version": "2.0", "generator": "rodin-jupyter sandbox"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "sandbox-triangle"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "mode": 4}]}],
        "buffers": [{"byteLength": len(positions)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(positions), "target": 34962}
        ],
        "accessors": [
            {
                "bufferView": 0,
                "byteOffset": 0,
                "componentType": 5126,
                "count": len(TRIANGLE),
                "type": "VEC3",
                "min": mins,
                "max": maxs,
            }
        ],
    }
    json_chunk = _pad(json.dumps(document, separators=(",", ":")).encode("utf-8"), b" ")
    bin_chunk = _pad(positions, b"\x00")
    total = 12 + 8 + len(json_chunk) + 8 + len(bin_chunk)
    return b"".join(
        [
            struct.pack("<4sII", GLB_MAGIC, GLB_VERSION, total),
            struct.pack("<II", len(json_chunk), CHUNK_JSON),
            json_chunk,
            struct.pack("<II", len(bin_chunk), CHUNK_BIN),
            bin_chunk,
        ]
    )
