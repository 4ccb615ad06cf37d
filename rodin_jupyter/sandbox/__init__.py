"""Local Rodin-compatible API server, so demos and tests never need a real key or network."""

from __future__ import annotations

from .answers import MESSAGES as ERROR_MESSAGES
from .glb import triangle_glb
from .ledger import ChargeRecord, Ledger, SandboxRequestError, sandbox_price
from .request_log import RequestRecord
from .server import SANDBOX_KEY, Sandbox
from .tasks import CANCELED, DONE, FAILED, GENERATING, WAITING

__all__ = [
    "CANCELED",
    "DONE",
    "ERROR_MESSAGES",
    "FAILED",
    "GENERATING",
    "SANDBOX_KEY",
    "WAITING",
    "ChargeRecord",
    "Ledger",
    "RequestRecord",
    "Sandbox",
    "SandboxRequestError",
    "sandbox_price",
    "triangle_glb",
]
