"""Local Rodin-compatible API server, so demos and tests never need a real key or network."""

from __future__ import annotations

from .glb import triangle_glb
from .ledger import ChargeRecord, Ledger, SandboxRequestError, sandbox_price
from .server import SANDBOX_KEY, RequestRecord, Sandbox

__all__ = [
    "SANDBOX_KEY",
    "ChargeRecord",
    "Ledger",
    "RequestRecord",
    "Sandbox",
    "SandboxRequestError",
    "sandbox_price",
    "triangle_glb",
]
