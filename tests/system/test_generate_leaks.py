"""Service text never carries the key into a message, repr, widget state or log.

A real loopback server echoes the bearer token it receives back in the fields generate()
reads (error codes, messages, ids, file names, download URLs); the real client and job stack
talk to it. Every error, repr and display bundle must hold no 8-character run of the key.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rodin_jupyter import RodinClient, RodinError
from rodin_jupyter.errors import BadResponseError, InsecureURLError, ServiceError
from rodin_jupyter.generation.submit import generate
from rodin_jupyter.http.jobs_api import SubmissionRefused, download_list
from rodin_jupyter.http.messages import scrub
from rodin_jupyter.http.urls import parse_base_url
from rodin_jupyter.widgets.jobs import progress_bundle

KEY = "RkTestKey0123456789abcdefXYZ"
HEX_KEY = "3f2a9c1e-77b4-4d0a-9e51-c0ffee123456"  # a key that looks like a uuid
UPPER_KEY = "RKTESTKEY0123456789ABCDEFXYZ"  # a key of the documented code shape
TASK = "0b7e1d2c-aaaa-4bbb-8ccc-000000000001"
JOB = "0b7e1d2c-aaaa-4bbb-8ccc-000000000002"
Route = Callable[[str, str], tuple[int, Any]]


def leaked(text: str, key: str) -> bool:
    """Any 8-character run of ``key`` in ``text``, also once spaces/punctuation are gone."""
    flat = "".join(ch for ch in text.lower() if ch.isalnum())
    bare = "".join(ch for ch in key.lower() if ch.isalnum())
    return any(key[i:i + 8].lower() in text.lower() for i in range(len(key) - 7)) or any(
        bare[i:i + 8] in flat for i in range(len(bare) - 7))


def blob(exc: BaseException) -> str:
    return f"{exc} {exc!r} {vars(exc)!r} {exc.args!r}"


class Echo:
    """A fake Rodin on 127.0.0.1 whose answers are built from the token it was sent."""

    def __init__(self) -> None:
        self.route: Route = lambda path, key: (500, "")
        self.paths: list[str] = []
        echo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def answer(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                if size:
                    self.rfile.read(size)
                key = self.headers.get("Authorization", "").split(" ", 1)[-1]
                echo.paths.append(self.path)
                status, payload = echo.route(self.path.rsplit("/", 1)[-1], key)
                body = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_port}/api/v2"

    def client(self, key: str = KEY) -> RodinClient:
        return RodinClient(key, self.base, deadline=5, retries=0)


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.server.shutdown()
    server.server.server_close()


def accepted(key: str, task: str = TASK, sub: str = "s0ae1b2c3", job: str = JOB) -> Any:
    return {"error": None, "uuid": task, "jobs": {"uuids": [job], "subscription_key": sub}}


def routes(submit: Route, status: Route | None = None, download: Route | None = None) -> Route:
    def route(path: str, key: str) -> tuple[int, Any]:
        if path == "check_balance":
            return 200, {"balance": 100}
        if path == "status" and status:
            return status(path, key)
        if path == "download" and download:
            return download(path, key)
        return submit(path, key)
    return route


REFUSALS: dict[str, Route] = {
    "200 code is the key": lambda p, k: (200, {"error": k, "message": "bad"}),
    "400 code holds the key": lambda p, k: (400, {"error": f"INVALID {k}"}),
    "201 code holds a piece": lambda p, k: (201, {"error": f"API_{k[:10].upper()}_X"}),
    "split key in the message": lambda p, k: (200, {"error": "API_UNKNOWN", "message": " ".join(
        k[i:i + 7] for i in range(0, len(k), 7))}),
    "dotted key in the message": lambda p, k: (400, {"error": "UNKNOWN", "message": (
        f"bad {k[:5]}.{k[5:]}")}),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
@pytest.mark.parametrize("key", [KEY, UPPER_KEY, HEX_KEY])
def test_a_refusal_never_shows_the_key(echo: Echo, name: str, key: str) -> None:
    echo.route = routes(REFUSALS[name])
    with pytest.raises(SubmissionRefused) as caught:
        generate("a chair", tier="Sketch", client=echo.client(key), watch=False)
    assert not leaked(blob(caught.value), key), blob(caught.value)
    assert str(caught.value).startswith("Submission refused (")


def test_an_odd_code_is_named_unrecognised_not_echoed(echo: Echo) -> None:
    echo.route = routes(lambda p, k: (200, {"error": "not-a-code <b>", "message": "bad"}))
    with pytest.raises(SubmissionRefused) as caught:
        generate("a chair", tier="Sketch", client=echo.client(), watch=False)
    assert str(caught.value) == "Submission refused (an unrecognised error code): bad."
    assert caught.value.code is None


def test_a_documented_code_is_still_shown_with_its_hint(echo: Echo) -> None:
    echo.route = routes(lambda p, k: (200, {
        "error": "API_INSUFFICIENT_FUNDS", "message": "The fund in your wallet is insufficient."}))
    with pytest.raises(SubmissionRefused) as caught:
        generate("a chair", tier="Sketch", client=echo.client(), watch=False)
    assert caught.value.code == "API_INSUFFICIENT_FUNDS"
    assert str(caught.value) == (
        "Submission refused (API_INSUFFICIENT_FUNDS): The fund in your wallet is "
        "insufficient; not enough credits; top up or choose a cheaper tier.")


@pytest.mark.parametrize("key", [KEY, UPPER_KEY, HEX_KEY])
def test_a_status_error_keeps_the_key_out_of_the_job_and_its_view(echo: Echo,
                                                                  key: str) -> None:
    echo.route = routes(lambda p, k: (200, accepted(k)),
                        status=lambda p, k: (200, {"error": k}))
    job = generate("a chair", tier="Sketch", client=echo.client(key), watch=False)
    with pytest.raises(ServiceError) as caught:
        job.poll()
    assert "an unrecognised error code" in str(caught.value)
    assert job.error and "status check failed" in job.error
    bundle = progress_bundle(job, [job])
    for text in (blob(caught.value), job.error, repr(job), json.dumps(bundle, default=repr)):
        assert not leaked(text, key), text


@pytest.mark.parametrize("key", [KEY, HEX_KEY])
def test_a_download_list_error_keeps_the_key_out(echo: Echo, key: str) -> None:
    echo.route = routes(lambda p, k: (200, accepted(k)),
                        download=lambda p, k: (400, {"error": k}))
    with pytest.raises(ServiceError) as caught:
        download_list(echo.client(key), TASK)
    assert "an unrecognised error code" in str(caught.value)
    assert not leaked(blob(caught.value), key)


ID_ECHOES: dict[str, Callable[[str], Any]] = {
    "task uuid": lambda k: accepted(k, task=k),
    "subscription key": lambda k: accepted(k, sub=k),
    "subscription key holds a piece": lambda k: accepted(k, sub="tok" + k[4:16] + "x"),
    "job uuid": lambda k: accepted(k, job=k),
    "task uuid holds a piece": lambda k: accepted(k, task="deadbeef-" + k[:12]),
}


@pytest.mark.parametrize("name", sorted(ID_ECHOES))
@pytest.mark.parametrize("key", [KEY, HEX_KEY])
def test_an_id_carrying_the_key_is_refused(echo: Echo, name: str, key: str) -> None:
    echo.route = routes(lambda p, k: (200, ID_ECHOES[name](k)))
    with pytest.raises(BadResponseError) as caught:
        generate("a chair", tier="Sketch", client=echo.client(key), watch=False)
    assert str(caught.value).startswith("The service's answer was unusable (")
    assert "may have been charged" in str(caught.value)
    assert not leaked(blob(caught.value), key)


def test_a_status_job_uuid_carrying_the_key_is_refused(echo: Echo) -> None:
    echo.route = routes(lambda p, k: (200, accepted(k)), status=lambda p, k: (
        200, {"jobs": [{"uuid": HEX_KEY, "status": "Done"}]}))
    job = generate("a chair", tier="Sketch", client=echo.client(HEX_KEY), watch=False)
    with pytest.raises(BadResponseError):
        job.poll()
    assert not leaked(repr(job) + json.dumps(progress_bundle(job, [job]), default=repr), HEX_KEY)


def test_good_ids_pass(echo: Echo) -> None:
    echo.route = routes(lambda p, k: (200, accepted(k)))
    job = generate("a chair", tier="Sketch", client=echo.client(), watch=False)
    assert (job.task_uuid, job.subscription_key) == (TASK, "s0ae1b2c3")


def test_a_download_url_carrying_the_key_is_not_fetched_nor_logged(
        echo: Echo, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    echo.route = routes(
        lambda p, k: (200, accepted(k)),
        status=lambda p, k: (200, {"jobs": [{"uuid": JOB, "status": "Done"}]}),
        download=lambda p, k: (200, {"error": "OK", "list": [
            {"name": "a.glb", "url": f"{echo.base}/f?k={k}"}]}))
    job = generate("a chair", tier="Sketch", client=echo.client(), watch=False)
    job.poll()
    with pytest.raises(RodinError) as caught:
        job.download(tmp_path)
    assert "download URL" in str(caught.value)
    assert not any("/f?" in path for path in echo.paths)  # never requested
    assert not leaked(blob(caught.value) + caplog.text, KEY)


def test_a_file_name_carrying_the_key_is_refused(echo: Echo) -> None:
    echo.route = routes(lambda p, k: (200, accepted(k)), download=lambda p, k: (
        200, {"error": "OK", "list": [{"name": f"{k}.glb", "url": f"{echo.base}/f/1"}]}))
    with pytest.raises(BadResponseError) as caught:
        download_list(echo.client(), TASK)
    assert not leaked(blob(caught.value), KEY)


def test_verbose_traceback_of_a_refusal_is_one_line(
        echo: Echo, ip: Any, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``%xmode Verbose`` prints frame locals; a RodinError shows one line, no frames."""
    echo.route = routes(lambda p, k: (200, {"error": k, "message": "bad"}))
    monkeypatch.setenv("RODIN_API_KEY", KEY)
    monkeypatch.setenv("RODIN_API_BASE", echo.base)
    mode = ip.InteractiveTB.mode
    ip.run_line_magic("xmode", "Verbose")
    try:
        capsys.readouterr()
        result = ip.run_cell("from rodin_jupyter import RodinClient\n"
                             "from rodin_jupyter.generation.submit import generate\n"
                             "generate('a chair', tier='Sketch', client=RodinClient(), "
                             "watch=False)\n")
        out = capsys.readouterr()
    finally:
        ip.run_line_magic("xmode", mode)
    assert isinstance(result.error_in_exec, SubmissionRefused)
    shown = [line for line in (out.out + out.err).splitlines() if line.strip()]
    assert len(shown) == 1 and "Submission refused (an unrecognised error code)" in shown[0]
    assert not leaked(out.out + out.err, KEY)


def test_scrub_finds_a_key_split_by_spaces_or_punctuation() -> None:
    for text in ("RkTestK ey01234 56789ab cdefXYZ", "RkTes.tKey0123-4567_89ab",
                 "r k t e s t k e y 0"):
        assert not leaked(scrub(f"says {text}.", KEY), KEY), scrub(text, KEY)
    assert scrub("The status check failed; will ask again.", KEY) == (
        "The status check failed; will ask again.")


def test_a_non_ascii_host_is_named_as_such() -> None:
    with pytest.raises(InsecureURLError) as caught:
        parse_base_url("http://l\u043ecalhost:8000/api/v2")
    assert "non-ASCII character" in str(caught.value)
    assert "backslash" not in str(caught.value)


@pytest.mark.parametrize("proxy", ["socks5://127.0.0.1:9", "http://[::1"])
def test_an_unusable_https_proxy_is_named(proxy: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("https_proxy", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", proxy)
    client = RodinClient(KEY, "https://rodin.invalid/api/v2", deadline=3, retries=0)
    with pytest.raises(RodinError) as caught:
        client.check_balance()
    assert "HTTPS_PROXY" in str(caught.value), str(caught.value)
