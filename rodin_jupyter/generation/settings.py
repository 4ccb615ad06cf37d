"""Timings and limits of generation jobs; plain attributes, so tests and notebooks set them.

``poll_interval`` is polite for the real service (5 s; frequent polling is throttled) and can
be shortened for the local sandbox, by assignment or ``RODIN_POLL_INTERVAL``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

MIN_POLL_INTERVAL = 0.1


def _env_float(name: str, default: float) -> float:
    try:
        return max(MIN_POLL_INTERVAL, float(os.environ.get(name, "") or default))
    except ValueError:
        return default


@dataclass
class GenerationSettings:
    """Shared by every job in the kernel."""

    poll_interval: float = field(default_factory=lambda: _env_float("RODIN_POLL_INTERVAL", 5.0))
    """Seconds between ``/status`` polls of one task."""

    status_gap: float = 1.0
    """Seconds at least between two ``/status`` requests of the poller, all tasks together:
    at most 60 a minute, half the lowest plan's rate limit, however many jobs are followed."""

    max_backoff: float = 60.0
    """The longest pause between polls after errors or 429s."""

    max_download_bytes: int = 1 << 30
    """No single downloaded file may be larger (1 GiB)."""

    max_embed_bytes: int = 20 << 20
    """A GLB larger than this (20 MiB) is not embedded in the notebook's 3D view."""

    list_attempts: int = 5
    """How often an incomplete or expired download list is asked for again."""


settings = GenerationSettings()
