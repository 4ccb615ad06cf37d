"""Job.attach after a real kernel restart: the new kernel resumes, downloads, pays nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY

SUBMIT = """\
from rodin_jupyter import generate
from rodin_jupyter.generation import settings
settings.poll_interval = 0.1
job = generate(prompt="a chair", tier="Gen-2")
print("IDS", job.task_uuid, job.subscription_key)
"""

ATTACH = """\
from rodin_jupyter import Job
from rodin_jupyter.generation import settings
settings.poll_interval = 0.1
print("BEFORE", "job" in globals())
again = Job.attach({task!r}, {key!r})
again.wait(timeout=60)
print("FILES", sorted(p.name for p in again.download({folder!r})))
print(repr(again))
"""


def execute(client: Any, code: str) -> str:
    texts: list[str] = []

    def hook(message: dict[str, Any]) -> None:
        content = message.get("content", {})
        if message.get("msg_type") == "stream":
            texts.append(content.get("text", ""))
        elif message.get("msg_type") == "error":
            texts.append("ERROR " + content.get("ename", "") + ": " + content.get("evalue", ""))

    reply = client.execute_interactive(code, timeout=90, output_hook=hook)
    assert reply["content"]["status"] == "ok", "".join(texts)
    return "".join(texts)


def test_attach_after_a_kernel_restart(sandbox_env: Sandbox, tmp_path: Path) -> None:
    pytest.importorskip("jupyter_client")
    from rodin_jupyter.demo import local_kernel_manager

    sockets = tmp_path / "sockets"
    sockets.mkdir()
    km = local_kernel_manager(str(sockets))
    km.start_kernel()
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        first = execute(client, SUBMIT)
        task, key = first.split("IDS", 1)[1].split()[:2]
        km.restart_kernel(now=True)
        client.wait_for_ready(timeout=60)
        second = execute(client, ATTACH.format(task=task, key=key, folder=str(tmp_path / "m")))
    finally:
        client.stop_channels()
        km.shutdown_kernel(now=True)
    assert "BEFORE False" in second  # a fresh kernel: the old job object is gone
    assert "FILES ['model.glb', 'preview.webp']" in second and task in second
    assert (tmp_path / "m" / "model.glb").read_bytes()[:4] == b"glTF"
    assert len(sandbox_env.charges) == 1 and sandbox_env.count("POST", "/rodin") == 1
    assert FAKE_KEY not in first + second
