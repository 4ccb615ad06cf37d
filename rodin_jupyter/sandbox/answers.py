"""The answers the sandbox sends, shaped per endpoint like the documented service.

Which keys appear matters to public clients: some treat any ``error`` key as failure, some
check ``"uuid" in answer``. So a refusal carries ``error`` and ``message`` only (no null
``uuid``/``jobs``), a status answer has no ``error`` key, and a download says ``"OK"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rodin_jupyter.balance.display import credits_json

# Live spellings (the docs' codes carry an API_ prefix and a plural on the wire).
INSUFFICIENT_FUNDS = "API_INSUFFICIENT_FUNDS"
PARALLELISM_LIMIT = "API_PARALLELISM_LIMIT_REACHED"
INVALID_REQUEST = "API_INVALID_REQUEST"
UNAUTHORIZED = "UNAUTHORIZED"
TOO_MANY_REQUESTS = "API_TOO_MANY_REQUESTS"

MESSAGES: dict[str, str] = {
    INSUFFICIENT_FUNDS: "The fund in your wallet is insufficient.",
    PARALLELISM_LIMIT: "Too many tasks are running at once; wait for one to finish.",
    "API_NO_ACTIVE_SUBSCRIPTION": "No active subscription; API access needs a Business plan.",
    "API_SUBSCRIPTION_PLAN_TOO_LOW": "Your subscription plan does not include this feature.",
    "API_USER_NOT_FOUND": "User not found.",
    "API_GROUP_NOT_FOUND": "Group not found.",
    "API_PERMISSION_DENIED": "Permission denied.",
    "API_UNKNOWN": "Unknown error.",
    INVALID_REQUEST: "Invalid request.",
}
"""Every documented refusal code (live spelling) and a message like the service's."""

UNAUTHORIZED_MESSAGE = "Active API key is required."


@dataclass
class Response:
    """One HTTP answer: status, body bytes, content type and extra headers."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(status: int, payload: Mapping[str, Any],
                headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload).encode("utf-8"), headers=dict(headers or {}))


def refusal(status: int, code: str, message: str | None = None) -> Response:
    """``{"error": CODE, "message": ...}``: nothing else, so no client mistakes it for a task."""
    return json_answer(status, {"error": code, "message": message or MESSAGES.get(code, code)})


def refusal_body(code: str, message: str | None = None) -> bytes:
    return refusal(0, code, message).body


def unauthorized() -> Response:
    return json_answer(401, {"error": UNAUTHORIZED, "message": UNAUTHORIZED_MESSAGE},
                       headers={"WWW-Authenticate": "Bearer"})


def balance(reported: Decimal) -> Response:
    return json_answer(200, {"balance": credits_json(reported)})


def submitted(task_uuid: str, job_uuids: Sequence[str], subscription_key: str,
              consumed: Decimal) -> Response:
    """The documented 201 for an accepted generation (``error`` null, the live ``consumed``)."""
    return json_answer(201, {
        "error": None,
        "message": "Submitted.",
        "uuid": task_uuid,
        "jobs": {"uuids": list(job_uuids), "subscription_key": subscription_key},
        "consumed": credits_json(consumed),
    })


def status(jobs: Sequence[tuple[str, str]]) -> Response:
    """``{"jobs": [{"uuid", "status"}]}``: the documented status answer has no ``error`` key."""
    return json_answer(200, {"jobs": [{"uuid": j, "status": s} for j, s in jobs]})


def download(items: Sequence[tuple[str, str]]) -> Response:
    """``{"error": "OK", "list": [{"url", "name"}]}``; early calls get an incomplete list."""
    return json_answer(200, {"error": "OK", "list": [{"url": u, "name": n} for u, n in items]})


def throttled(retry_after: float) -> Response:
    seconds = f"{retry_after:g}"
    return json_answer(429, {"error": TOO_MANY_REQUESTS,
                             "message": f"Too many requests; retry after {seconds} s."},
                       headers={"Retry-After": seconds})


def expired_url() -> Response:
    """What a presigned storage URL answers once it has expired (S3 style, not JSON)."""
    body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>"
            "<Message>Request has expired</Message></Error>")
    return Response(403, body.encode("utf-8"), "application/xml")
