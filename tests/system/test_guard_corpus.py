"""The corpus (tests/guard_corpus.py) in one real kernel against the sandbox over loopback.

Three phases in one kernel (a kernel start costs seconds): the ordinary cells at an ample
balance (never blocked, no generation and no balance request); every spending idiom at a
balance below its cost (zero generation requests, one line, the cell fails); every spending
idiom again at an ample balance (the ledger's credits equal the sandbox's charges exactly).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY
from tests.guard_corpus import ORDINARY, PRELUDE, SPENDING

pytestmark = pytest.mark.timeout(600)

GENERATION_PATHS = ("/rodin", "/rodin_texture_only", "/bang")


class Kernel:
    """A real ipykernel; ``run`` returns the reply status, error and the outputs' text."""

    def __init__(self, cwd: Path) -> None:
        from jupyter_client.manager import start_new_kernel

        self.km, self.kc = start_new_kernel(kernel_name="python3", cwd=str(cwd))

    def run(self, code: str) -> dict[str, Any]:
        outputs: list[dict[str, Any]] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] in ("stream", "error", "execute_result", "display_data"):
                outputs.append(msg["content"])

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=120,
                                            stop_on_error=False)
        content = reply["content"]
        text = "\n".join([o.get("text", "") + o.get("data", {}).get("text/plain", "")
                          + "\n".join(o.get("traceback", [])) for o in outputs])
        return {"status": content["status"], "ename": content.get("ename"),
                "outputs": outputs, "text": text}

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@pytest.fixture
def kernel(sandbox_env: Sandbox, monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> Iterator[Kernel]:
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    k = Kernel(tmp_path)
    try:
        yield k
    finally:
        k.close()


def generations(sb: Sandbox) -> int:
    return sum(sb.count("POST", p) for p in GENERATION_PATHS)


def test_the_corpus(kernel: Kernel, sandbox_env: Sandbox) -> None:
    assert len(SPENDING) >= 30 and len(ORDINARY) >= 30
    for code in (PRELUDE, "%load_ext rodin_jupyter", "%rodin_guard on"):
        assert kernel.run(code)["status"] == "ok", code

    # 1. ordinary cells: never blocked, no generation, no balance request
    before = sandbox_env.count()
    for code in ORDINARY:
        out = kernel.run(code)
        assert out["status"] == "ok", (code, out["text"][-500:])
    assert generations(sandbox_env) == 0
    assert sandbox_env.count("GET", "/check_balance") == 0
    assert sandbox_env.count() - before == sum(
        sandbox_env.count("POST", p) + sandbox_env.count("GET", p) for p in
        ("/status", "/download"))  # the cells' own free calls, nothing else

    # 2. below the cost: nothing sent, one line, the cell fails
    sandbox_env.set_balance("0.2")
    for name, setup, spend in SPENDING:
        if setup:
            out = kernel.run(setup)
            assert out["status"] == "ok", (name, out["text"][-500:])
        out = kernel.run(spend)
        errors = [o for o in out["outputs"] if "traceback" in o]
        assert generations(sandbox_env) == 0, name
        assert len(errors) == 1 and len(errors[0]["traceback"]) == 1, (name, out["text"])
        assert errors[0]["ename"] == "GuardBlocked", name
        assert "not sent" in errors[0]["evalue"] and "Traceback" not in out["text"], name
        assert out["status"] == "error", name  # so "Run All" stops here
    assert sandbox_env.balance == Decimal("0.2") and sandbox_env.charges == []

    # 3. ample balance: every idiom goes out, the ledger equals the sandbox's charges
    sandbox_env.set_balance("1000")
    for name, _, spend in SPENDING:
        out = kernel.run(spend)
        assert out["status"] == "ok" and "GuardBlocked" not in out["text"], (name, out["text"])
    out = kernel.run("%rodin_balance --ledger --json")
    ledger = json.loads(out["text"])
    charges = sandbox_env.charges
    assert len(charges) == generations(sandbox_env) == len(ledger["entries"])
    assert len(charges) >= len(SPENDING) + 20  # loops and batches send several each
    assert all(e["status"] == "sent" for e in ledger["entries"])
    assert Decimal(str(ledger["total"])) == sum(c.credits for c in charges)
    assert sorted(str(e["task_uuid"]) for e in ledger["entries"]) == sorted(
        c.task_uuid for c in charges)
    assert FAKE_KEY not in out["text"]
