"""The job endpoints: submit (``POST /rodin``), ``/status``, ``/download`` and file fetches.

Every call goes through the balance client's session, so the send-time guard sees the
submission and the hardening of ``client.py`` applies. A submission is sent exactly once and
never retried here: a retried submit can be charged twice. Status and download calls are one
attempt each; the poller decides when to try again (backing off on 429, honouring
``Retry-After``). Files are fetched by ``files_api.py``, without the key.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests
import urllib3

from rodin_jupyter.errors import (
    BadResponseError,
    KeyRefusedError,
    RateLimitedError,
    RodinError,
    RodinNetworkError,
    RodinTimeoutError,
    ServiceError,
)
from rodin_jupyter.http import untrusted
from rodin_jupyter.http.answers import load_json
from rodin_jupyter.http.client import RodinClient
from rodin_jupyter.http.deadline import Watchdog
from rodin_jupyter.http.urls import host_of

MAX_ANSWER_BYTES = 1024 * 1024
FileItem = tuple[str, bytes, str]
"""An uploaded file: (file name, content, content type)."""

_HINTS = {
    "INSUFFICIENT_FUND": "not enough credits; top up or choose a cheaper tier",
    "PARALLELISM_LIMIT": "too many tasks running; wait for one (job.wait()) and submit again",
    "INVALID_REQUEST": "the service refused the fields; check prompt, images and options",
    "NO_ACTIVE_SUBSCRIPTION": "API access needs an active Business plan",
    "PLAN_TOO_LOW": "your plan does not include this option",
}
STATES = frozenset({"Waiting", "Generating", "Done", "Failed", "Canceled"})


class SubmissionRefused(RodinError):
    """The service refused a submission (``error`` code set, or a 4xx with a code)."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class NotSent(RodinNetworkError):
    """The connection could not even be opened: the request never left."""


class TaskNotFound(RodinError):
    """The service does not know this subscription key or task uuid (a wrong id?)."""


@dataclass(frozen=True)
class Submitted:
    """What an accepted submission returned."""

    task_uuid: str
    subscription_key: str
    job_uuids: tuple[str, ...]
    consumed: Decimal | None


def _fresh(exc: RodinError) -> RodinError:
    """A copy with no traceback or chain back to requests' objects (they carry the header)."""
    return copy.copy(exc)


def _read(response: requests.Response, limit: int = MAX_ANSWER_BYTES) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(65536):
        size += len(chunk)
        if size > limit:
            raise BadResponseError("The service's answer is far too large; not read.")
        chunks.append(chunk)
    return b"".join(chunks)


def _seconds(value: str) -> float:
    """Delta-seconds of a ``Retry-After`` header, at most an hour; -1 when unreadable."""
    try:
        seconds = float(value.strip())
    except ValueError:
        return -1.0
    return min(seconds, 3600.0) if seconds >= 0 else -1.0  # NaN fails both tests


def _never_connected(exc: BaseException) -> bool:
    """True when urllib3 failed to open the connection (refused, DNS): nothing was sent."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return False
        if isinstance(seen, urllib3.exceptions.NewConnectionError):
            return True
        reason = getattr(seen, "reason", None)
        seen = reason if isinstance(reason, BaseException) else (
            seen.args[0] if seen.args and isinstance(seen.args[0], BaseException)
            else seen.__context__)
    return False


def _post(client: RodinClient, path: str, what: str, **kwargs: Any) -> tuple[int, Any, float]:
    """One POST to the API with the key; returns (status, JSON payload or None, retry-after)."""
    url = f"{client.base_url}/{path}"
    host = host_of(url)
    timeout = (client.connect_timeout, client.read_timeout)
    watchdog = Watchdog(client.deadline)
    try:
        with watchdog, client.session.post(
                url, headers={"Accept": "application/json"}, timeout=timeout, stream=True,
                **client.api_options(), **kwargs) as response:
            status = response.status_code
            retry = response.headers.get("Retry-After", "")
            wait = _seconds(retry)
            body = _read(response) if status < 300 or 400 <= status < 500 else b""
    except RodinError as exc:  # the send-time guard's refusal, a deadline error
        raise _fresh(exc) from None
    except requests.exceptions.ConnectTimeout:
        raise NotSent(f"{host} could not be reached in time for {what}; nothing was "
                      "sent.") from None
    except requests.exceptions.ConnectionError as exc:
        if watchdog.fired:
            raise RodinTimeoutError(f"{host} did not answer {what} within "
                                    f"{client.deadline:g} s.") from None
        if _never_connected(exc):
            raise NotSent(f"Could not connect to {host} for {what}; nothing was sent: "
                          "check the network or RODIN_API_BASE.") from None
        raise RodinNetworkError(f"The connection to {host} broke during {what}.") from None
    except requests.exceptions.Timeout:
        raise RodinTimeoutError(f"{host} did not answer {what} in time.") from None
    except requests.exceptions.RequestException:
        if watchdog.fired:
            raise RodinTimeoutError(f"{host} did not answer {what} within "
                                    f"{client.deadline:g} s.") from None
        raise RodinNetworkError(f"Could not reach {host} for {what}: check the network "
                                "or RODIN_API_BASE.") from None
    if watchdog.fired:
        raise RodinTimeoutError(f"{host} did not answer {what} within {client.deadline:g} s.")
    if status in (401, 403):
        raise KeyRefusedError(f"The Rodin API key was refused (HTTP {status}) for {what}: "
                              "check RODIN_API_KEY (API access needs a Business plan).")
    if status == 429:
        shown = f"retry after {wait:.0f} s" if wait >= 0 else "wait a minute"
        raise RateLimitedError(f"{host} is rate limiting {what} (HTTP 429); {shown}.",
                               wait if wait >= 0 else None)
    payload = None
    if body:
        try:
            payload = load_json(body)
        except BadResponseError:
            if 200 <= status < 300:
                raise
    return status, payload, wait


def submit(client: RodinClient, fields: Mapping[str, str | Sequence[str]],
           images: Sequence[FileItem] = (), endpoint: str = "rodin") -> Submitted:
    """Send one generation. Never retried: an answer lost after sending may have been charged."""
    what = f"the {endpoint} submission"
    # Always multipart (the service takes nothing else): fields as file-less parts.
    parts: list[tuple[str, Any]] = [
        (name, (None, value)) for name, values in fields.items()
        for value in ([values] if isinstance(values, str) else values)]
    parts += [("images", item) for item in images]
    try:
        status, payload, _ = _post(client, endpoint, what, files=parts)
    except NotSent:
        raise
    except (RodinTimeoutError, RodinNetworkError) as exc:
        raise RodinNetworkError(
            f"{exc} The submission may have been charged; it is not retried. Check the "
            "balance and the ledger before submitting again.") from None
    code = untrusted.error_code(payload, client.scrub)
    if 200 <= status < 300 and not code and isinstance(payload, dict):
        return _accepted(payload, client.scrub)
    if code or (400 <= status < 500):
        known = untrusted.known_code(code)
        hint = next((h for k, h in _HINTS.items() if known and k in known), "")
        said = untrusted.message(payload, client.scrub)
        bits = [p for p in (said, hint) if p]
        detail = f": {'; '.join(bits)}" if bits else ""
        raise SubmissionRefused(f"Submission refused ({code or f'HTTP {status}'}){detail}.",
                                known)
    host = host_of(client.base_url)
    if status == 500:  # RODIN_API.md: a 500 is what a malformed array field gets
        raise ServiceError(
            f"{host} answered HTTP 500 to the submission; not retried (a retry can be "
            "charged twice). Array fields such as addons must be JSON lists; check the "
            "balance before trying again.", status)
    if status > 500:
        raise ServiceError(
            f"{host} is unavailable (HTTP {status}) for the submission; it may or may not "
            "have been charged and is not retried. Check the balance and the ledger "
            "(%rodin_balance --ledger) before submitting again.", status)
    raise ServiceError(
        f"{host} answered HTTP {status} to the submission; not retried (a retry can be "
        "charged twice). Check the balance before trying again.", status)


def _accepted(payload: Mapping[str, Any], scrub: untrusted.Scrub) -> Submitted:
    task = payload.get("uuid")
    jobs = payload.get("jobs")
    if not isinstance(task, str) or not task or not isinstance(jobs, dict):
        raise BadResponseError("The submission answer has no task uuid or jobs; it may have "
                               "been charged: check the balance before submitting again.")
    key = jobs.get("subscription_key")
    uuids = jobs.get("uuids") or []
    if not isinstance(key, str) or not key or not isinstance(uuids, list):
        raise BadResponseError("The submission answer has no subscription key.")
    charged = "; it may have been charged: check the balance before submitting again"
    task = untrusted.service_id(task, untrusted.UUID_SHAPE, scrub, "task uuid", charged)
    key = untrusted.service_id(key, untrusted.TOKEN_SHAPE, scrub, "subscription key",
                               charged)
    uuids = [untrusted.service_id(u, untrusted.UUID_SHAPE, scrub, "job uuid", charged)
             for u in uuids]
    consumed = payload.get("consumed")
    return Submitted(task, key, tuple(uuids),
                     consumed if isinstance(consumed, Decimal) else None)


def status(client: RodinClient, subscription_key: str) -> list[tuple[str, str]]:
    """The jobs of a task and their states (one attempt; 429 raises RateLimitedError)."""
    code_status, payload, _ = _post(client, "status", "the status check",
                                    json={"subscription_key": subscription_key})
    code = untrusted.error_code(payload, client.scrub)
    jobs = payload.get("jobs") if isinstance(payload, dict) else None
    if code_status == 404 or ("NOT_FOUND" in (untrusted.known_code(code) or "")
                              and not jobs):
        raise TaskNotFound("The service knows no task with this subscription key; check the "
                           "ids given to Job.attach (they are in the job's repr).")
    if not 200 <= code_status < 300 or not isinstance(jobs, list) or (code and not jobs):
        shown = code or f"HTTP {code_status}"
        raise ServiceError(f"The status check failed ({shown}); will ask again.", code_status)
    found: list[tuple[str, str]] = []
    for job in jobs:
        if isinstance(job, dict) and isinstance(job.get("uuid"), str):
            state = job.get("status")  # untrusted text: only the states we know
            uuid = untrusted.service_id(job["uuid"], untrusted.UUID_SHAPE, client.scrub,
                                        "job uuid in the status answer")
            found.append((uuid, state if state in STATES else "Unknown"))
    return found


def download_list(client: RodinClient, task_uuid: str) -> list[tuple[str, str]]:
    """(name, url) of each file of a finished task; empty while the list is not ready."""
    code_status, payload, _ = _post(client, "download", "the download list",
                                    json={"task_uuid": task_uuid})
    items = payload.get("list") if isinstance(payload, dict) else None
    code = untrusted.error_code(payload, client.scrub)
    if code_status == 404 or ("NOT_FOUND" in (untrusted.known_code(code) or "")
                              and not items):
        raise TaskNotFound("The service knows no task with this uuid; check the id given "
                           "to Job.attach (it is in the job's repr and the ledger).")
    if not 200 <= code_status < 300 or not isinstance(items, list):
        shown = code or f"HTTP {code_status}"
        raise ServiceError(f"The download list could not be read ({shown}).", code_status)
    found: list[tuple[str, str]] = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("url"), str) \
                and isinstance(item.get("name"), str):
            found.append((untrusted.file_name(item["name"], client.scrub),
                           untrusted.file_url(item["url"], client.scrub)))
    return found
