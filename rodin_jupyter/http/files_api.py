"""Fetching a task's files from their download URLs: without the key, capped, within a deadline.

Download URLs point at storage hosts (presigned, expiring), never at the API: the key is not
sent with them. https only (plain http to loopback for the sandbox); a few redirects are
followed, each checked the same way. An expired link (401/403/404/410) raises UrlExpired so
the caller asks ``/download`` for a fresh list.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlsplit

import requests

from rodin_jupyter.errors import (
    BadResponseError,
    InsecureURLError,
    RodinError,
    RodinNetworkError,
    RodinTimeoutError,
    ServiceError,
)
from rodin_jupyter.http import untrusted
from rodin_jupyter.http.client import RodinClient
from rodin_jupyter.http.deadline import Watchdog
from rodin_jupyter.http.urls import host_of, is_loopback_host

FILE_DEADLINE = 600.0
MAX_REDIRECTS = 3


class UrlExpired(RodinError):
    """A download URL answered 401/403/404/410: ask ``/download`` for a fresh list."""


def _check_file_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http"
                                   and is_loopback_host(parts.hostname or "")):
        return url
    raise InsecureURLError("A download URL is not https; not fetched.")


def fetch(client: RodinClient, url: str, out: BinaryIO, limit: int) -> int:
    """Stream a file into ``out`` without the key; at most ``limit`` bytes. Returns the size."""
    start = time.monotonic()
    for _ in range(MAX_REDIRECTS + 1):
        host = host_of(_check_file_url(untrusted.file_url(url, client.scrub)))
        try:
            with Watchdog(FILE_DEADLINE), client.session.get(
                    url, timeout=(client.connect_timeout, client.read_timeout), stream=True,
                    allow_redirects=False) as response:
                if response.is_redirect:
                    url = urljoin(url, response.headers.get("Location", ""))
                    continue
                if response.status_code in (401, 403, 404, 410):
                    raise UrlExpired(f"The download URL at {host} has expired "
                                     f"(HTTP {response.status_code}).")
                if not 200 <= response.status_code < 300:
                    raise ServiceError(f"{host} answered HTTP {response.status_code} "
                                       "to a file download.", response.status_code)
                return _copy(response.iter_content(1 << 16), out, limit, start)
        except RodinError as exc:
            raise copy.copy(exc) from None
        except requests.exceptions.RequestException:
            raise RodinNetworkError(f"The download from {host} failed; try again.") from None
    raise ServiceError("A download URL redirected too many times; not followed.")


def _copy(chunks: Iterator[bytes], out: BinaryIO, limit: int, start: float) -> int:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BadResponseError(f"A downloaded file is larger than {limit >> 20} MB; "
                                   "stopped (raise the download limit to fetch it).")
        if time.monotonic() - start > FILE_DEADLINE:
            raise RodinTimeoutError("A download took longer than "
                                    f"{FILE_DEADLINE:g} s; stopped.")
        out.write(chunk)
    return size


def sanitize_name(name: str) -> str:
    """A file name from the service, safe to join to a folder (no paths, no dot files)."""
    base = Path(name.replace("\\", "/")).name.strip()
    base = re.sub(r"[^\w.+-]", "_", base)[:120]
    if not base.strip("._"):
        raise BadResponseError("The download list has a file without a usable name.")
    return base.lstrip(".")
