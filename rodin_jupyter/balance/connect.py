"""The monitor's client, built from ``settings.client``: the faces never construct one.

The magics write the settings and call :func:`apply_client_settings`; the identity (base,
timeouts, key fingerprint, unit) decides whether the monitor's readings still apply.
"""

from __future__ import annotations

from rodin_jupyter.balance.monitor import BalanceMonitor, get_monitor
from rodin_jupyter.balance.settings import READ_TIMEOUT_LIMIT, settings
from rodin_jupyter.http.client import RodinClient
from rodin_jupyter.http.key import key_fingerprint


def apply_client_settings(monitor: BalanceMonitor | None = None) -> None:
    """Point ``monitor`` (the shared one by default) at the client the settings describe."""
    section = settings.client
    base = section.base_url or None
    connect = section.connect_timeout
    read = min(section.read_timeout, READ_TIMEOUT_LIMIT)
    deadline = section.deadline

    def factory() -> RodinClient:
        return RodinClient(base_url=base, connect_timeout=connect, read_timeout=read,
                           deadline=deadline)

    target = get_monitor() if monitor is None else monitor
    target.configure(factory, identity=(base, connect, read, deadline, key_fingerprint(),
                                        settings.balance.scale))


__all__ = ["apply_client_settings"]
