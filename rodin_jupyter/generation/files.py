"""Downloading a task's files: temp file then rename, GLB header check, fresh URLs on expiry.

Download URLs expire after about ten minutes and an early list may be incomplete: an expired
URL makes us ask ``/download`` again for that file, and a list without the requested
geometry file is asked for again a few times before the files that are there are written.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rodin_jupyter.errors import BadResponseError, RodinError
from rodin_jupyter.generation.settings import settings
from rodin_jupyter.http import files_api, jobs_api

if TYPE_CHECKING:
    from rodin_jupyter.generation.job import Job

MODELS_VARIABLE = "RODIN_MODELS_DIR"
GLB_MAGIC = b"glTF"


def models_folder(folder: str | os.PathLike[str] | None = None) -> Path:
    """``folder``, else ``RODIN_MODELS_DIR``, else ``./rodin_models``."""
    chosen = folder or os.environ.get(MODELS_VARIABLE) or "rodin_models"
    return Path(chosen).expanduser()


def check_glb(path: Path, name: str | None = None) -> None:
    """A GLB starts with 'glTF', version 2, and its declared length fits the file.

    ``name`` is the file's final name for the message (``path`` may be a ``.part`` file).
    """
    shown = name or path.name
    size = path.stat().st_size
    with path.open("rb") as handle:
        header = handle.read(12)
    if len(header) < 12 or header[:4] != GLB_MAGIC:
        raise BadResponseError(f"{shown} is not a GLB file (bad header); not saved.")
    version, length = struct.unpack("<II", header[4:12])
    if version != 2 or length > size or length < 12:
        raise BadResponseError(f"{shown} is not a valid glTF 2 binary (version {version}, "
                               f"{length} bytes declared, {size} received); not saved.")


def folder_error(folder: Path, exc: OSError) -> RodinError:
    """One line naming the folder and what to do (not a raw OSError from tempfile)."""
    reason = exc.strerror or type(exc).__name__
    return RodinError(f"Could not write into the folder {folder}: {reason}; nothing was "
                      "saved. Call job.download(folder) with a folder you can write to.")


def _wanted_format(job: Job) -> str:
    return str(job.fields.get("geometry_file_format") or "glb").lower().lstrip(".")


def _listing(job: Job) -> list[tuple[str, str]]:
    """The download list, asked again while it lacks the requested geometry file."""
    wanted = "." + _wanted_format(job)
    items: list[tuple[str, str]] = []
    for attempt in range(max(1, settings.list_attempts)):
        items = jobs_api.download_list(job.client, job.task_uuid)
        if any(name.lower().endswith(wanted) for name, _ in items):
            return items
        if attempt + 1 < settings.list_attempts:
            time.sleep(min(settings.poll_interval, 5.0))
    if not items:
        raise RodinError(f"The download list of task {job.task_uuid} is empty; "
                         "try job.download() again in a minute.")
    return items  # attached jobs may not know the format; write what there is


def _fetch_one(job: Job, name: str, urls: dict[str, str], folder: Path) -> Path:
    """One file; on an expired link, one fresh list serves this file and the ones after it."""
    target = folder / files_api.sanitize_name(name)
    for attempt in range(max(1, settings.list_attempts)):
        try:
            descriptor, name_of_temp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.",
                                                        suffix=".part")
        except OSError as exc:
            raise folder_error(folder, exc) from None
        temp = Path(name_of_temp)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                files_api.fetch(job.client, urls[name], handle, settings.max_download_bytes)
            if target.suffix.lower() == ".glb":
                check_glb(temp, target.name)
            os.replace(temp, target)
            return target
        except OSError as exc:  # disk full, the target is a folder, permissions...
            raise folder_error(folder, exc) from None
        except files_api.UrlExpired:
            if attempt + 1 >= settings.list_attempts:
                raise
            urls.update(jobs_api.download_list(job.client, job.task_uuid))
            if name not in urls:
                raise RodinError(f"{target.name} is no longer in the download list of task "
                                 f"{job.task_uuid}.") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    raise RodinError(f"Could not download {target.name}.")  # pragma: no cover


def download_task(job: Job, folder: str | os.PathLike[str] | None = None) -> list[Path]:
    """Every file of the task's list into ``folder``; returns the paths written."""
    target = models_folder(folder)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RodinError(f"Could not create the folder {target}: "
                         f"{exc.strerror or type(exc).__name__}; call job.download(folder) "
                         "with a folder you can write to.") from None
    items = _listing(job)
    urls = dict(items)
    return [_fetch_one(job, name, urls, target) for name in dict.fromkeys(n for n, _ in items)]
