"""The sandbox over real loopback HTTP: ledger, prices, job flow, GLB, faults, threads."""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests

from rodin_jupyter.sandbox import SANDBOX_KEY, Sandbox
from rodin_jupyter.sandbox.glb import CHUNK_BIN, CHUNK_JSON, triangle_glb

FAKE_WRONG_KEY = "obviously-fake-wrong-key"


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(balance="10", job_seconds=0.3) as sandbox:
        yield sandbox


def _auth(key: str = SANDBOX_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _rodin(
    sb: Sandbox, session: Any = requests, endpoint: str = "/rodin", **fields: str
) -> requests.Response:
    data = {"prompt": "a small test cube", **fields}
    files: dict[str, tuple[None, str]] = {k: (None, v) for k, v in data.items()}  # multipart
    response: requests.Response = session.post(
        sb.base_url + endpoint, headers=_auth(), files=files, timeout=5
    )
    return response


def test_balance_read_and_set(sb: Sandbox) -> None:
    r = requests.get(sb.base_url + "/check_balance", headers=_auth(), timeout=5)
    assert r.status_code == 200
    assert r.json() == {"balance": 10}
    assert isinstance(r.json()["balance"], int)
    sb.set_balance("9.5")
    assert requests.get(sb.base_url + "/check_balance", headers=_auth(), timeout=5).json() == {
        "balance": 9.5
    }
    assert sb.balance == Decimal("9.5")
    assert sb.base_url.startswith("http://127.0.0.1:") and sb.base_url.endswith("/api/v2")


def test_wrong_or_missing_key_is_401_and_not_stored(sb: Sandbox) -> None:
    for headers in (_auth(FAKE_WRONG_KEY), {}, {"Authorization": SANDBOX_KEY}):
        r = requests.get(sb.base_url + "/check_balance", headers=headers, timeout=5)
        assert r.status_code == 401
        assert r.json() == {"error": "UNAUTHORIZED", "message": "Active API key is required."}
    r = requests.post(
        sb.base_url + "/rodin",
        headers=_auth(FAKE_WRONG_KEY),
        files={"prompt": (None, "x")},
        timeout=5,
    )
    assert r.status_code == 401
    assert sb.charges == [] and sb.balance == Decimal(10)
    assert [rec.authorized for rec in sb.requests] == [False, False, False, False]
    assert SANDBOX_KEY not in repr(sb.requests) and FAKE_WRONG_KEY not in repr(sb.requests)
    r = requests.get(sb.base_url + "/nope", headers=_auth(), timeout=5)
    assert r.status_code == 404 and r.json()["error"]


def test_loopback_only() -> None:
    with pytest.raises(ValueError):
        Sandbox(host="0.0.0.0")
    with pytest.raises(ValueError):
        Sandbox(host="example.com")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, "0.5"),
        ({"tier": "Sketch"}, "0.5"),
        ({"tier": "Gen-2"}, "0.5"),
        ({"tier": "Gen-2.5-High"}, "0.5"),
        ({"tier": "Gen-2.5-Extreme-High"}, "1.0"),
        ({"tier": "Regular", "addons": '["HighPack"]'}, "1.5"),
        ({"tier": "Detail", "addons": '["highpack"]'}, "1.5"),
        ({"tier": "Gen-2.5-High", "texture_mode": "extreme-high"}, "0.5"),  # docs: +0
        (
            {
                "tier": "Gen-2.5-Extreme-High",
                "addons": '["HighPack"]',
                "texture_mode": "extreme-high",
            },
            "2.0",
        ),
    ],
)
def test_generation_charges_price_table(sb: Sandbox, fields: dict[str, str], expected: str) -> None:
    r = _rodin(sb, **fields)
    assert r.status_code == 201
    body = r.json()
    assert body["error"] is None and body["message"] == "Submitted."
    assert body["uuid"] and body["jobs"]["subscription_key"] and body["jobs"]["uuids"]
    assert Decimal(str(body["consumed"])) == Decimal(expected)
    assert sb.balance == Decimal(10) - Decimal(expected)
    [charge] = sb.charges
    assert charge.task_uuid == body["uuid"] and charge.credits == Decimal(expected)
    assert charge.endpoint == "/rodin"


def test_texture_only_bang_and_other_encodings(sb: Sandbox) -> None:
    texture = requests.post(sb.base_url + "/rodin_texture_only", headers=_auth(), timeout=5,
                            files={"image": ("a.png", b"png"), "model": ("m.glb", b"glb")})
    assert texture.json()["consumed"] == 0.5
    assert _rodin(sb, endpoint="/bang", asset_id="a1", strength="4").json()["consumed"] == 0.5
    # /rodin is multipart only: urlencoded and JSON bodies are refused and cost nothing
    urlenc = requests.post(
        sb.base_url + "/rodin", headers=_auth(), data={"prompt": "x", "tier": "Gen-2"}, timeout=5
    )
    as_json = requests.post(
        sb.base_url + "/rodin",
        headers=_auth(),
        json={"prompt": "x", "addons": '["HighPack"]'},
        timeout=5,
    )
    assert urlenc.status_code == as_json.status_code == 400
    assert urlenc.json()["error"] == as_json.json()["error"] == "API_INVALID_REQUEST"
    assert sb.balance == Decimal("9")  # 10 - 0.5 - 0.5
    upload: dict[str, tuple[str | None, bytes]] = {
        "images": ("a.png", b"\x89PNG\r\n\x1a\n\x00binary"),
        "tier": (None, b"Sketch"),
    }
    with_image = requests.post(sb.base_url + "/rodin", headers=_auth(), files=upload, timeout=5)
    assert with_image.status_code == 201 and with_image.json()["error"] is None


def test_invalid_requests_do_not_charge(sb: Sandbox) -> None:
    r = _rodin(sb, tier="Gen-9")
    assert r.status_code == 400 and r.json()["error"] == "API_INVALID_REQUEST"
    # addons as a real array (repeated fields) -> 500 like the live service
    r = requests.post(
        sb.base_url + "/rodin",
        headers=_auth(),
        files=[("prompt", (None, "x")), ("addons", (None, "HighPack")), ("addons", (None, "x"))],
        timeout=5,
    )
    assert r.status_code == 500
    r = requests.post(
        sb.base_url + "/bang",
        headers=_auth(),
        files=[("asset_id", (None, "a")), ("strength", (None, "3")),
               ("addons", (None, "HighPack")), ("addons", (None, "HighPack"))],
        timeout=5,
    )
    assert r.status_code == 500
    assert (
        requests.post(
            sb.base_url + "/rodin", headers=_auth(), files={"tier": (None, "Sketch")}, timeout=5
        ).status_code
        == 400
    )  # no prompt, no images
    assert sb.charges == [] and sb.balance == Decimal(10)


def test_insufficient_funds_is_201_with_error_and_no_charge(sb: Sandbox) -> None:
    sb.set_balance("0.9")
    r = _rodin(sb, tier="Gen-2.5-Extreme-High")
    assert r.status_code == 201
    assert r.json()["error"] == "API_INSUFFICIENT_FUNDS"
    assert r.json()["message"] == "The fund in your wallet is insufficient."
    assert set(r.json()) == {"error", "message"}  # no uuid/jobs keys, not even null
    assert sb.charges == [] and sb.balance == Decimal("0.9")
    assert _rodin(sb, tier="Sketch").json()["error"] is None
    assert sb.balance == Decimal("0.4")


def test_status_progression_and_download(sb: Sandbox) -> None:
    created = _rodin(sb).json()
    key, task = created["jobs"]["subscription_key"], created["uuid"]
    seen: list[str] = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        r = requests.post(
            sb.base_url + "/status", headers=_auth(), json={"subscription_key": key}, timeout=5
        )
        assert r.status_code == 200 and "error" not in r.json()
        status = r.json()["jobs"][0]["status"]
        if not seen or seen[-1] != status:
            seen.append(status)
        if status == "Done":
            break
        if status == "Waiting":  # an early download: an incomplete (here empty) list
            early = requests.post(
                sb.base_url + "/download", headers=_auth(), json={"task_uuid": task}, timeout=5
            )
            assert early.json() == {"error": "OK", "list": []}
        time.sleep(0.03)
    assert seen == ["Waiting", "Generating", "Done"]

    bad = requests.post(
        sb.base_url + "/status", headers=_auth(), json={"subscription_key": "nope"}, timeout=5
    )
    assert bad.json()["error"]

    listing = requests.post(
        sb.base_url + "/download", headers=_auth(), json={"task_uuid": task}, timeout=5
    ).json()
    assert listing["error"] == "OK"
    item, preview = listing["list"]
    assert item["name"] == "model.glb" and item["url"].endswith("/model.glb")
    assert item["url"].startswith(f"{sb.origin}/files/{task}/")
    assert preview["name"] == "preview.webp"
    glb = requests.get(item["url"], timeout=5)  # presigned-style URL: no key sent
    assert glb.status_code == 200 and glb.headers["Content-Type"] == "model/gltf-binary"
    assert glb.content == triangle_glb()
    assert sb.charges[0].credits == Decimal("0.5") and len(sb.charges) == 1  # polling is free


def test_glb_is_valid() -> None:
    data = triangle_glb()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, length) == (b"glTF", 2, len(data))
    json_len, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == CHUNK_JSON and json_len % 4 == 0
    json_bytes = data[20 : 20 + json_len]
    assert json_bytes.rstrip(b" ") == json_bytes.strip()
    doc = json.loads(json_bytes)
    bin_len, bin_type = struct.unpack_from("<II", data, 20 + json_len)
    assert bin_type == CHUNK_BIN and bin_len % 4 == 0
    assert 20 + json_len + 8 + bin_len == len(data)
    binary = data[28 + json_len :]
    assert doc["asset"]["version"] == "2.0"
    accessor = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    view = doc["bufferViews"][accessor["bufferView"]]
    assert doc["buffers"][0]["byteLength"] <= bin_len
    assert accessor["componentType"] == 5126 and accessor["type"] == "VEC3"
    floats = struct.unpack_from(f"<{3 * accessor['count']}f", binary, view["byteOffset"])
    vertices = [floats[i : i + 3] for i in range(0, len(floats), 3)]
    assert [min(v[i] for v in vertices) for i in range(3)] == accessor["min"]
    assert [max(v[i] for v in vertices) for i in range(3)] == accessor["max"]


def test_fault_injection_status_times_and_headers(sb: Sandbox) -> None:
    sb.inject_fault(
        path="/check_balance",
        status=503,
        body=b"<html>down</html>",
        content_type="text/html",
        times=2,
        headers={"Retry-After": "1"},
    )
    url = sb.base_url + "/check_balance"
    for _ in range(2):
        r = requests.get(url, headers=_auth(), timeout=5)
        assert r.status_code == 503 and r.text == "<html>down</html>"
        assert r.headers["Retry-After"] == "1" and r.headers["Content-Type"] == "text/html"
    assert requests.get(url, headers=_auth(), timeout=5).status_code == 200
    assert sb.count(method="GET", path="/check_balance") == 3

    sb.inject_fault(path="/rodin", status=429, times=None)
    for _ in range(3):
        assert _rodin(sb).status_code == 429
    assert sb.charges == [] and sb.count(method="POST", path="/rodin") == 3
    sb.clear_faults()
    assert _rodin(sb).status_code == 201


def test_fault_injection_delay_and_drop(sb: Sandbox) -> None:
    sb.inject_fault(path="/check_balance", status=200, body=b'{"balance": 1}', delay=0.5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(sb.base_url + "/check_balance", headers=_auth(), timeout=0.15)
    sb.inject_fault(path=None, drop=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        _rodin(sb)
    assert sb.charges == []
    assert [r.status for r in sb.requests] == [200, 0]
    # status=None: the real answer runs (and charges), then the connection is dropped.
    sb.inject_fault(path="/rodin", status=None, drop=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        _rodin(sb)
    assert len(sb.charges) == 1 and sb.balance == Decimal("9.5")


def test_concurrent_generations_never_lose_updates() -> None:
    with Sandbox(balance="60") as sb:
        errors: list[BaseException] = []
        refused = [0]
        lock = threading.Lock()

        def worker() -> None:
            try:
                with requests.Session() as session:
                    for i in range(25):
                        tier = "Gen-2.5-Extreme-High" if i % 2 else "Sketch"
                        body = _rodin(sb, session, tier=tier).json()
                        if body["error"] is not None:
                            assert body["error"] == "API_INSUFFICIENT_FUNDS"
                            with lock:
                                refused[0] += 1
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        charges = sb.charges
        assert sum((c.credits for c in charges), Decimal(0)) == Decimal(60) - sb.balance
        assert sb.balance >= 0
        assert len(charges) + refused[0] == 200
        assert refused[0] > 0  # 200 calls averaging 0.75 exceed 60 credits
        assert len({c.task_uuid for c in charges}) == len(charges)
        assert sb.count(method="POST", path="/rodin") == 200


def test_stop_leaves_no_threads_and_is_idempotent() -> None:
    before = threading.active_count()
    existing = set(threading.enumerate())
    sb = Sandbox(job_seconds=0)
    sb.start()
    session = requests.Session()  # keep-alive connection left open on purpose
    assert session.get(sb.base_url + "/check_balance", headers=_auth(), timeout=5).ok
    sb.inject_fault(path="/check_balance", status=200, delay=10)
    outcome: list[object] = []

    def call_delayed() -> None:
        try:
            outcome.append(requests.get(sb.base_url + "/check_balance", headers=_auth(), timeout=5))
        except requests.exceptions.RequestException as exc:
            outcome.append(exc)

    hung = threading.Thread(target=call_delayed)
    hung.start()
    time.sleep(0.1)
    started = time.monotonic()
    sb.stop()  # must not wait out the 10 s delay
    hung.join(5)
    assert time.monotonic() - started < 3
    assert len(outcome) == 1 and isinstance(outcome[0], requests.exceptions.ConnectionError)
    sb.stop()
    session.close()
    assert threading.active_count() == before
    assert set(threading.enumerate()) <= existing


def test_no_stderr_output(capfd: pytest.CaptureFixture[str]) -> None:
    with Sandbox() as sb:
        sb.inject_fault(drop=True)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(sb.base_url + "/check_balance", headers=_auth(), timeout=5)
        requests.get(sb.base_url + "/check_balance", headers=_auth(FAKE_WRONG_KEY), timeout=5)
        requests.post(sb.base_url + "/rodin", headers=_auth(), data=b"\xff\x00", timeout=5)
    out, err = capfd.readouterr()
    assert err == "" and out == ""
