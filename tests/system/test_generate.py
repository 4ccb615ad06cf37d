"""generate() end to end against the sandbox over loopback, through the real client.

Submit, progress states, failed jobs, expired download URLs, refusals, the batch's budget and
balance stop, 429s while polling, multi-job tasks with a preview image, no thread left behind
and no key in any output. Faults come from the sandbox's own switches (``fail_jobs``,
``refuse``, ``throttle``, ``expire_download_urls``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from rodin_jupyter.errors import RodinError
from rodin_jupyter.generation import Job, JobFailedError, generate, generate_many, settings
from rodin_jupyter.generation.files import check_glb
from rodin_jupyter.generation.poller import get_poller, next_pause, poller_threads
from rodin_jupyter.http import jobs_api
from rodin_jupyter.http.files_api import sanitize_name
from rodin_jupyter.http.jobs_api import SubmissionRefused
from rodin_jupyter.sandbox import Sandbox
from tests.conftest import FAKE_KEY, run_cell


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Sandbox-speed polling; the poller is stopped and joined after each test."""
    monkeypatch.setattr(settings, "poll_interval", 0.05)
    monkeypatch.setattr(settings, "max_backoff", 2.0)
    monkeypatch.setattr(settings, "status_gap", 0.01)
    yield
    get_poller().shutdown()


@pytest.fixture
def env(sandbox_env: Sandbox, fresh_monitor: Any, fast: None) -> Sandbox:
    return sandbox_env


def posts(sandbox: Sandbox, path: str) -> int:
    return sandbox.count("POST", path)


def test_submit_follows_the_states_to_done_and_downloads(env: Sandbox, tmp_path: Path) -> None:
    env.job_seconds = 1.5
    seen: list[str] = []
    job = generate(prompt="a wooden chair", tier="Gen-2", watch=False)
    job.subscribe(lambda: seen.extend(job.states.values()))
    assert job.price == Decimal("0.5") and len(env.charges) == 1
    assert job.task_uuid in repr(job) and job.subscription_key in repr(job)
    job.wait(timeout=30)
    assert job.succeeded and set(job.states.values()) == {"Done"}
    order = ["Waiting", "Generating", "Done"]
    ranks = [order.index(s) for s in seen]
    assert ranks == sorted(ranks), seen  # never backwards
    assert seen[0] != "Done" and seen[-1] == "Done", seen
    paths = job.download(tmp_path / "out")
    assert sorted(p.name for p in paths) == ["model.glb", "preview.webp"]
    check_glb(paths[0])
    assert not [p for p in paths[0].parent.iterdir() if p.suffix == ".part"]
    assert posts(env, "/rodin") == 1 and len(env.charges) == 1


def test_a_failed_job_makes_wait_raise_one_line(env: Sandbox) -> None:
    env.fail_jobs(times=1)
    job = generate(prompt="a chair", watch=False)
    with pytest.raises(JobFailedError) as caught:
        job.wait(timeout=30)
    message = str(caught.value)
    assert "\n" not in message and next(iter(job.states)) in message and "Failed" in message
    with pytest.raises(JobFailedError):
        job.download()
    assert env.count("POST", "/download") == 0


def after_first_listing(monkeypatch: pytest.MonkeyPatch, then: Any) -> None:
    """Run ``then(items)`` right after the first download list arrives (before any fetch)."""
    real = jobs_api.download_list
    calls: list[int] = []

    def listing(client: Any, task_uuid: str) -> list[tuple[str, str]]:
        items = real(client, task_uuid)
        calls.append(1)
        if len(calls) == 1:
            then(items)
        return items

    monkeypatch.setattr(jobs_api, "download_list", listing)


def test_an_expired_download_url_is_asked_for_again(env: Sandbox, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    job = generate(prompt="a lamp").wait(timeout=30)
    after_first_listing(monkeypatch, lambda items: env.expire_download_urls())
    paths = job.download(tmp_path)
    check_glb(next(p for p in paths if p.suffix == ".glb"))
    expired = [r for r in env.requests if r.method == "GET" and r.status == 403]
    assert len(expired) == 1  # the first fetch met the expired link; then a fresh list
    assert env.count("POST", "/download") == 2


def test_a_broken_glb_is_not_saved(env: Sandbox, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    job = generate(prompt="a lamp").wait(timeout=30)

    def break_the_model(items: list[tuple[str, str]]) -> None:
        url = next(u for n, u in items if n.endswith(".glb"))
        env.inject_fault(urlsplit(url).path, status=200, body=b"<html>nope",
                         content_type="text/html", times=1)

    after_first_listing(monkeypatch, break_the_model)
    with pytest.raises(RodinError, match="not a GLB"):
        job.download(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_refused_submission_raises_the_service_code(env: Sandbox) -> None:
    env.set_balance(0)
    with pytest.raises(SubmissionRefused) as caught:
        generate(prompt="a chair")
    assert "INSUFFICIENT_FUND" in (caught.value.code or "")
    assert "\n" not in str(caught.value) and "INSUFFICIENT_FUND" in str(caught.value)
    assert env.charges == [] and posts(env, "/rodin") == 1


def test_a_parallelism_refusal_is_not_retried(env: Sandbox) -> None:
    env.refuse("API_PARALLELISM_LIMIT_REACHED")
    with pytest.raises(SubmissionRefused, match="PARALLELISM") as caught:
        generate(prompt="a chair")
    assert "wait for one" in str(caught.value)
    assert posts(env, "/rodin") == 1


def test_a_503_to_the_submission_is_sent_once(env: Sandbox) -> None:
    env.inject_fault("/rodin", status=503, times=None)
    with pytest.raises(RodinError, match="not retried"):
        generate(prompt="a chair")
    assert posts(env, "/rodin") == 1


def test_a_submission_charged_then_dropped_is_not_retried(env: Sandbox) -> None:
    env.drop_after_charge()
    with pytest.raises(RodinError, match="may have been charged") as caught:
        generate(prompt="a chair")
    assert "\n" not in str(caught.value)
    assert posts(env, "/rodin") == 1 and len(env.charges) == 1  # charged once, not twice


def test_a_refused_connection_says_nothing_was_sent(fresh_monitor: Any, fast: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("RODIN_API_KEY", FAKE_KEY)
    monkeypatch.setenv("RODIN_API_BASE", f"http://127.0.0.1:{port}/api/v2")
    with pytest.raises(jobs_api.NotSent, match="nothing was sent"):
        generate(prompt="a chair")


def test_an_unknown_tier_is_refused_before_sending(env: Sandbox) -> None:
    with pytest.raises(RodinError, match="Unknown Rodin tier"):
        generate(prompt="a chair", tier="Gen-9")
    assert posts(env, "/rodin") == 0


def test_a_batch_stops_at_its_budget(env: Sandbox) -> None:
    batch = generate_many(["a", {"prompt": "b", "tier": "Gen-2.5-Extreme-High"}, "c", "d"],
                          budget=2)
    assert len(batch) == 3 and len(env.charges) == 3
    assert batch.stopped is not None and "generation 4" in batch.stopped
    assert "budget" in batch.stopped and "\n" not in batch.stopped
    assert batch.stopped in repr(batch)
    batch.wait(timeout=30)


def test_a_batch_stops_when_the_balance_cannot_cover_the_next(env: Sandbox) -> None:
    env.set_balance("1")
    batch = generate_many(["a", "b", "c"])
    assert len(batch) == 2 and batch.stopped is not None and "balance is 0" in batch.stopped
    assert posts(env, "/rodin") == 2  # the third was never sent


def test_a_batch_fails_closed_when_the_balance_cannot_be_read(env: Sandbox) -> None:
    env.inject_fault("/check_balance", status=500, times=None)
    batch = generate_many(["a"])
    assert len(batch) == 0 and batch.stopped and "could not be read" in batch.stopped
    assert posts(env, "/rodin") == 0


def test_polling_backs_off_on_429_and_still_finishes(env: Sandbox) -> None:
    errors: list[str] = []
    job = generate(prompt="a chair", watch=False)
    job.subscribe(lambda: errors.append(job.error or ""))
    env.throttle("/status", retry_after=1, times=2)
    job.wait(timeout=30)
    assert any("429" in e for e in errors) and job.succeeded


def test_next_pause_honours_retry_after_and_doubles_on_errors() -> None:
    assert next_pause(5.0, 0, None) == 5.0
    assert next_pause(5.0, 2, None) == 20.0
    assert next_pause(5.0, 1, 30.0) == 30.0
    assert next_pause(5.0, 9, None) == settings.max_backoff


def test_attach_resumes_a_task_and_downloads(env: Sandbox, tmp_path: Path) -> None:
    first = generate(prompt="a chair", watch=False)
    again = Job.attach(first.task_uuid, first.subscription_key)
    again.wait(timeout=30)
    assert again.download(tmp_path)[0].name == "model.glb"
    assert len(env.charges) == 1


def test_attach_with_the_task_uuid_alone_downloads(env: Sandbox, tmp_path: Path) -> None:
    first = generate(prompt="a chair", watch=False)  # the ledger keeps only the task uuid
    again = Job.attach(first.task_uuid).wait(timeout=30)
    names = sorted(p.name for p in again.download(tmp_path))
    assert names == ["model.glb", "preview.webp"] and env.count("POST", "/status") == 0
    assert len(env.charges) == 1


def test_attaching_an_unknown_task_fails_in_one_line(env: Sandbox) -> None:
    job = Job.attach("00000000-0000-0000-0000-000000000000", "not-a-subscription-key")
    with pytest.raises(JobFailedError, match="knows no task") as caught:
        job.wait(timeout=30)
    assert "\n" not in str(caught.value)
    alone = Job.attach("00000000-0000-0000-0000-000000000000")
    with pytest.raises(JobFailedError, match="knows no task"):
        alone.wait(timeout=30)


def test_the_poller_thread_ends_when_jobs_end_and_on_shutdown(env: Sandbox) -> None:
    before = set(threading.enumerate())
    env.job_seconds = 60
    job = generate(prompt="a slow chair")
    assert poller_threads()
    get_poller().shutdown()
    ours = {t for t in set(threading.enumerate()) - before
            if not t.name.startswith("rodin-sandbox")}  # the server's keep-alive threads
    assert poller_threads() == [] and ours == set()
    env.job_seconds = 0.1
    job.wait(timeout=30)  # wait() re-arms polling, which ends with the job
    get_poller().shutdown()
    assert poller_threads() == []


def test_interpreter_exit_stops_the_poller_cleanly(sandbox_env: Sandbox) -> None:
    import subprocess
    import sys

    sandbox_env.job_seconds = 600
    code = ("import atexit, threading\n"  # atexit runs last-in first-out: this runs last
            "atexit.register(lambda: print('left:', [t.name for t in threading.enumerate()"
            " if t.name == 'rodin-job-poller']))\n"
            "from rodin_jupyter import generate\n"
            "job = generate(prompt='a chair')\n"
            "from rodin_jupyter.generation.poller import poller_threads\n"
            "assert poller_threads()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "left: []" in done.stdout and done.stderr == ""
    assert FAKE_KEY not in done.stdout


def test_unload_ext_stops_the_poller(ip: Any, env: Sandbox) -> None:
    env.job_seconds = 60
    result = run_cell(ip, "from rodin_jupyter import generate\n"
                          "job = generate(prompt='a chair')\njob")
    assert result.success and poller_threads()
    run_cell(ip, "%unload_ext rodin_jupyter")
    assert poller_threads() == []
    run_cell(ip, "%load_ext rodin_jupyter")
    ip.user_ns.pop("job", None)


def test_the_key_is_in_no_output(ip: Any, env: Sandbox, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    env.set_balance("1.5")
    cells = [
        "from rodin_jupyter import generate, generate_many, Job",
        "job = generate(prompt='a chair')\njob",
        f"job.wait(30); job.download(r'{tmp_path}')",
        "job.preview()",
        "batch = generate_many(['a', 'b', 'c'])\nbatch",
        "generate(prompt='x')",
        "Job.attach(job.task_uuid, job.subscription_key).wait(30)",
    ]
    shown: list[str] = []
    for cell in cells:
        result = run_cell(ip, cell)
        if result.result is not None:
            data, _ = ip.display_formatter.format(result.result)
            shown.append(json.dumps(data))
        if result.error_in_exec is not None:
            shown += [str(result.error_in_exec), repr(result.error_in_exec)]
    out = capsys.readouterr()
    everything = "\n".join([*shown, out.out, out.err])
    assert "INSUFFICIENT_FUND" in everything  # the refusal did show
    assert "model.glb" in everything and "rodin-glb-canvas" in everything
    assert FAKE_KEY not in everything
    for name in ("job", "batch"):
        ip.user_ns.pop(name, None)


def test_file_names_from_the_service_stay_in_the_folder() -> None:
    assert sanitize_name("../../etc/passwd") == "passwd"
    assert sanitize_name("a b/c d.glb") == "c_d.glb"
    with pytest.raises(RodinError):
        sanitize_name("..")


def test_a_multi_job_task_with_a_preview(env: Sandbox, tmp_path: Path) -> None:
    job = generate(prompt="a chair", preview_render=True, geometry_file_format="fbx")
    job.wait(timeout=30)
    assert len(job.states) == 2 and set(job.states.values()) == {"Done"}
    names = sorted(p.name for p in job.download(tmp_path))
    assert "preview.webp" in names and any(n.endswith(".fbx") for n in names)
    preview = job.preview()
    assert preview.image is not None and "data:image/webp" in preview.html()
