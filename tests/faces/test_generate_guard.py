"""generate() under the send-time guard: a refused submit is never sent, a batch stops."""

from __future__ import annotations

from typing import Any

import pytest

from rodin_jupyter.generation.poller import get_poller
from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY, run_cell


@pytest.fixture
def guarded(ip: Any, sandbox_env: Sandbox) -> Any:
    from rodin_jupyter.guard import decision

    run_cell(ip, "%rodin_guard on")
    yield decision
    run_cell(ip, "%rodin_guard off")
    get_poller().shutdown()
    ip.user_ns.pop("job", None)


def test_a_submit_the_balance_cannot_cover_is_blocked_unsent(guarded: Any, ip: Any,
                                                              sandbox_env: Sandbox) -> None:
    sandbox_env.set_balance("0.2")
    result = run_cell(ip, "from rodin_jupyter import generate\n"
                          "job = generate(prompt='a chair', tier='Gen-2')")
    error = result.error_in_exec or result.error_before_exec
    assert isinstance(error, guarded.GuardBlocked), repr(error)
    lines = error._render_traceback_()
    assert len(lines) == 1 and FAKE_KEY not in lines[0]
    assert sandbox_env.count("POST", "/rodin") == 0 and sandbox_env.charges == []


def test_a_covered_submit_goes_out_once(guarded: Any, ip: Any, sandbox_env: Sandbox) -> None:
    result = run_cell(ip, "from rodin_jupyter import generate\n"
                          "job = generate(prompt='a chair', tier='Gen-2')")
    assert result.success
    assert sandbox_env.count("POST", "/rodin") == 1 and len(sandbox_env.charges) == 1


def test_a_batch_stops_at_the_guards_budget(guarded: Any, ip: Any,
                                            sandbox_env: Sandbox) -> None:
    assert run_cell(ip, "%rodin_budget 1").success
    try:
        result = run_cell(ip, "from rodin_jupyter import generate_many\n"
                              "batch = generate_many(['a', 'b', 'c'])")
        assert result.success
        batch = ip.user_ns.pop("batch")
    finally:
        run_cell(ip, "%rodin_budget off")
    assert len(batch) == 2 and sandbox_env.count("POST", "/rodin") == 2
    assert batch.stopped and "generation 3" in batch.stopped and "\n" not in batch.stopped
    assert "budget" in batch.stopped and "not sent" in batch.stopped
