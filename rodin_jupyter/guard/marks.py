"""Thread-local marks of the billable requests being sent, keyed to each request.

An outer hook (``requests.Session.send``) marks the request it checked; inner layers
(urllib3, http.client) pass that same request (same endpoint, same body object) and check
every other one, so a billable request sent from a non-billable one's send is still checked.
"""

from __future__ import annotations

import threading
from typing import Any

_marks = threading.local()
FORKED = ("guard: {what} not sent from a forked child process (multiprocessing fork): the "
          "kernel's balance and budget cannot be shared with it; send billable requests "
          "from the kernel process (threads or asyncio)")


def mark_stack() -> list[tuple[str, object]]:
    stack: list[tuple[str, object]] | None = getattr(_marks, "stack", None)
    if stack is None:
        stack = _marks.stack = []
    return stack


def is_guarded(endpoint: str | None, body: object = None, any_body: bool = False) -> bool:
    """Is this very request already being sent by an outer hook on this thread?"""
    if endpoint is None:
        return False
    return any(name == endpoint and (any_body or mark is body) for name, mark in mark_stack())


def is_post(method: object) -> bool:
    text = method.decode("latin-1") if isinstance(method, bytes) else str(method)
    return text.strip().upper() == "POST"


def clear_marks() -> None:
    _marks.stack = []


def netloc(conn: Any) -> str:
    """``host:port`` of a connection or pool; an IPv6 literal in brackets."""
    host = str(conn.host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{conn.port}" if conn.port else host


__all__ = ["FORKED", "clear_marks", "is_guarded", "is_post", "mark_stack", "netloc"]
