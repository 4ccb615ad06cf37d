"""The request rules the service documents (a public OpenAPI description of v2).

Each check raises :class:`SandboxRequestError` with ``API_INVALID_REQUEST`` before anything is
charged, so a notebook that passes here does not get refused (or billed) on the real service
for a field the docs rule out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from rodin_jupyter.guard.pricing import MESH_MODES

from .forms import MULTIPART, ParsedBody
from .ledger import SandboxRequestError

MAX_IMAGES = 5
SEED_RANGE = (0, 65535)
STRENGTH_RANGE = (2, 12)
GEOMETRY_FORMATS = ("glb", "usdz", "fbx", "obj", "stl")
DEFAULT_GEOMETRY_FORMAT = "glb"
RODIN_ENUMS: dict[str, tuple[str, ...]] = {
    "quality": ("high", "medium", "low", "extra-low"),
    "mesh_mode": MESH_MODES,  # one spelling rule with the estimator
    "material": ("PBR", "Shaded", "All", "None"),
    "geometry_file_format": GEOMETRY_FORMATS,
    "condition_mode": ("fuse", "concat"),
}
TEXTURE_ONLY_ENUMS: dict[str, tuple[str, ...]] = {
    "material": ("PBR", "Shaded"),
    "resolution": ("Basic", "High"),
    "geometry_file_format": GEOMETRY_FORMATS,
}
BANG_ENUMS: dict[str, tuple[str, ...]] = {
    # Not listed for /bang in RODIN_API.md, but bang answers a model like /rodin does: an
    # unknown format would be charged and then listed as a file that does not exist.
    "geometry_file_format": GEOMETRY_FORMATS,
}
BOOLEANS = ("true", "false")
WHOLE_NUMBER = re.compile(r"-?[0-9]+")  # ASCII digits only: no "4_2", "+5" or other scripts


def bad(message: str) -> SandboxRequestError:
    return SandboxRequestError(400, "API_INVALID_REQUEST", message)


def text_field(parsed: ParsedBody, name: str) -> str | None:
    """A field's one text value (None when absent); repeated or non-text values are refused."""
    values = parsed.fields.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise bad(f"{name} is sent {len(values)} times; send it once")
    value = values[0]
    if not isinstance(value, str):
        raise bad(f"{name} must be a string")
    return value.strip()


def _enum(parsed: ParsedBody, enums: dict[str, tuple[str, ...]]) -> None:
    for name, allowed in enums.items():
        value = text_field(parsed, name)
        if value is not None and value not in allowed:
            raise bad(f"{name} must be one of {', '.join(allowed)}, not {value[:40]!r}")


def _integer(parsed: ParsedBody, name: str, bounds: tuple[int, int], required: bool) -> None:
    value = text_field(parsed, name)
    if value is None or value == "":
        if required:
            raise bad(f"{name} is required ({bounds[0]}-{bounds[1]})")
        return
    if WHOLE_NUMBER.fullmatch(value) is None:
        raise bad(f"{name} must be a whole number, not {value[:40]!r}")
    number = int(value, 10) if len(value) <= 20 else None  # no 4300-digit int() here
    if number is None or not bounds[0] <= number <= bounds[1]:
        raise bad(f"{name} must be between {bounds[0]} and {bounds[1]}, not {value[:40]}")


def _bbox(parsed: ParsedBody) -> None:
    """``bbox_condition``: one JSON-string array of three integers (a real array -> 500)."""
    values = parsed.fields.get("bbox_condition")
    if not values:
        return
    if len(values) > 1 or not isinstance(values[0], str):
        raise SandboxRequestError(500, "INTERNAL_SERVER_ERROR",
                                  "Internal Server Error (bbox_condition must be one JSON string)")
    try:
        decoded: object = json.loads(values[0])
    except ValueError:
        decoded = None
    if not (isinstance(decoded, list) and len(decoded) == 3
            and all(isinstance(n, int) and not isinstance(n, bool) for n in decoded)):
        raise bad("bbox_condition must be a JSON array of three integers, e.g. '[100, 100, 100]'")


def _boolean(parsed: ParsedBody, name: str) -> bool:
    value = text_field(parsed, name)
    if value is None or value == "":
        return False
    if value.lower() not in BOOLEANS:
        raise bad(f"{name} must be true or false, not {value[:40]!r}")
    return value.lower() == "true"


def _multipart_only(endpoint: str, parsed: ParsedBody) -> None:
    if parsed.kind != MULTIPART:
        raise bad(f"{endpoint} takes multipart/form-data (got {parsed.kind or 'no body'})")


def _files(parsed: ParsedBody, name: str) -> int:
    return len(parsed.files.get(name, []))


def check_generation(endpoint: str, parsed: ParsedBody) -> None:
    """Refuse what the docs rule out for ``/rodin``, ``/rodin_texture_only`` and ``/bang``."""
    _multipart_only(endpoint, parsed)
    _integer(parsed, "seed", SEED_RANGE, required=False)
    if endpoint == "/rodin":
        images = _files(parsed, "images")
        if images > MAX_IMAGES:
            raise bad(f"at most {MAX_IMAGES} images are allowed, not {images}")
        if not images and not text_field(parsed, "prompt"):
            raise bad("either a prompt or images are required")
        _enum(parsed, RODIN_ENUMS)
        _bbox(parsed)
        _boolean(parsed, "preview_render")
    elif endpoint == "/rodin_texture_only":
        if _files(parsed, "image") != 1 or _files(parsed, "model") != 1:
            raise bad("rodin_texture_only needs one image file and one model file")
        _enum(parsed, TEXTURE_ONLY_ENUMS)
    elif endpoint == "/bang":
        if not text_field(parsed, "asset_id") and _files(parsed, "model") != 1:
            raise bad("bang needs an asset_id or a model file")
        _integer(parsed, "strength", STRENGTH_RANGE, required=True)
        _enum(parsed, BANG_ENUMS)


def geometry_format(parsed: ParsedBody) -> str:
    return text_field(parsed, "geometry_file_format") or DEFAULT_GEOMETRY_FORMAT


def preview_render(parsed: ParsedBody) -> bool:
    """``preview_render=true`` adds a job (the rendered preview) to the task."""
    return _boolean(parsed, "preview_render")


def required_text(parsed: ParsedBody, name: str) -> str:
    value = text_field(parsed, name)
    if not value:
        raise bad(f"{name} is required")
    return value


__all__: Sequence[str] = ("check_generation", "geometry_format", "preview_render",
                          "required_text", "text_field")
