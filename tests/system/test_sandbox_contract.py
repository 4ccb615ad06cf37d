"""The sandbox against the published facts (/work/shared/RODIN_API.md), over real loopback.

Written from the documentation, not from the sandbox: every endpoint's accepted and refused
requests, the keys each answer carries, every documented error code, the documented faults.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from io import BytesIO
from typing import Any

import pytest
import requests

from rodin_jupyter.sandbox import SANDBOX_KEY, Sandbox

BAD_KEY = "FAKE-not-the-sandbox-key"
UNAUTHORIZED_BODY = {"error": "UNAUTHORIZED", "message": "Active API key is required."}
INSUFFICIENT_MESSAGE = "The fund in your wallet is insufficient."
# The docs' codes; live answers carry an API_ prefix and a plural (INSUFFICIENT_FUNDS).
DOCUMENTED_CODES = ("NO_ACTIVE_SUBSCRIPTION", "SUBSCRIPTION_PLAN_TOO_LOW", "INSUFFICIENT_FUND",
                    "INVALID_REQUEST", "USER_NOT_FOUND", "GROUP_NOT_FOUND", "PERMISSION_DENIED",
                    "UNKNOWN")
LIVE_CODES = ("API_NO_ACTIVE_SUBSCRIPTION", "API_SUBSCRIPTION_PLAN_TOO_LOW",
              "API_INSUFFICIENT_FUNDS", "API_INVALID_REQUEST", "API_USER_NOT_FOUND",
              "API_GROUP_NOT_FOUND", "API_PERMISSION_DENIED", "API_UNKNOWN",
              "API_PARALLELISM_LIMIT_REACHED")
ENDPOINTS = {"/check_balance": "GET", "/rodin": "POST", "/rodin_texture_only": "POST",
             "/bang": "POST", "/status": "POST", "/download": "POST"}
FORMATS = ("glb", "usdz", "fbx", "obj", "stl")
Files = Sequence[tuple[str, tuple[str | None, bytes | str]]]


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(balance="100", job_seconds=0.2) as sandbox:
        yield sandbox


def auth(key: str = SANDBOX_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def form(**fields: str) -> list[tuple[str, tuple[str | None, bytes | str]]]:
    return [(name, (None, value)) for name, value in fields.items()]


def image(name: str = "images") -> tuple[str, tuple[str | None, bytes | str]]:
    return (name, ("a.png", b"\x89PNG\r\n\x1a\n"))


def model_file() -> tuple[str, tuple[str | None, bytes | str]]:
    return ("model", ("m.glb", b"glTF\x02\x00\x00\x00"))


def post(sb: Sandbox, path: str, files: Files | None = None,
         json: Mapping[str, Any] | None = None, key: str = SANDBOX_KEY) -> requests.Response:
    return requests.post(sb.base_url + path, headers=auth(key), files=files, json=json,
                         timeout=10)


def submit(sb: Sandbox, path: str = "/rodin", extra: Files = (), **fields: str) -> dict[str, Any]:
    if path == "/rodin" and "prompt" not in fields:
        fields["prompt"] = "a small cube"
    r = post(sb, path, [*form(**fields), *extra])
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def wait_final(sb: Sandbox, key: str, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [j["status"] for j in post(sb, "/status", json={"subscription_key": key})
                  .json()["jobs"]]
        if all(s in ("Done", "Failed", "Canceled") for s in states):
            return states
        time.sleep(0.05)
    raise AssertionError("jobs did not finish")


def assert_refusal(r: requests.Response, status: int, code: str) -> None:
    """A refusal carries error and message only: no uuid/jobs, not even as null."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "message"} and body["error"] == code
    assert isinstance(body["message"], str) and body["message"]


# -- authentication and routes -------------------------------------------------------------


@pytest.mark.parametrize(("path", "method"), ENDPOINTS.items())
def test_every_endpoint_needs_the_key(sb: Sandbox, path: str, method: str) -> None:
    for headers in (auth(BAD_KEY), {}):
        r = requests.request(method, sb.base_url + path, headers=headers,
                             files=form(prompt="x") if method == "POST" else None, timeout=10)
        assert r.status_code == 401 and r.json() == UNAUTHORIZED_BODY
    assert sb.charges == [] and sb.balance == Decimal(100)


@pytest.mark.parametrize(("path", "method"), ENDPOINTS.items())
def test_every_endpoint_takes_one_method(sb: Sandbox, path: str, method: str) -> None:
    wrong = "POST" if method == "GET" else "GET"
    r = requests.request(wrong, sb.base_url + path, headers=auth(), timeout=10)
    assert r.status_code == 405 and r.headers["Allow"] == method


def test_check_balance_answer(sb: Sandbox) -> None:
    r = requests.get(sb.base_url + "/check_balance", headers=auth(), timeout=10)
    assert r.status_code == 200 and r.json() == {"balance": 100}


# -- POST /rodin ---------------------------------------------------------------------------

ACCEPTED_RODIN: list[dict[str, str]] = [
    {}, {"seed": "0"}, {"seed": "65535"}, {"bbox_condition": "[100, 80, 60]"},
    {"preview_render": "true"}, {"preview_render": "false"},
    *({"quality": q} for q in ("high", "medium", "low", "extra-low")),
    *({"mesh_mode": m} for m in ("Raw", "Quad")),
    *({"material": m} for m in ("PBR", "Shaded", "All", "None")),
    *({"geometry_file_format": f} for f in FORMATS),
    *({"condition_mode": c} for c in ("fuse", "concat")),
]


@pytest.mark.parametrize("fields", ACCEPTED_RODIN, ids=str)
def test_rodin_accepts_documented_values(sb: Sandbox, fields: dict[str, str]) -> None:
    body = submit(sb, "/rodin", (), **fields)
    assert set(body) == {"error", "message", "uuid", "jobs", "consumed"}
    assert body["error"] is None and body["uuid"]
    assert set(body["jobs"]) == {"uuids", "subscription_key"} and body["jobs"]["subscription_key"]
    assert len(body["jobs"]["uuids"]) == (2 if fields.get("preview_render") == "true" else 1)
    assert [c.task_uuid for c in sb.charges] == [body["uuid"]]


def test_rodin_accepts_five_images_without_a_prompt(sb: Sandbox) -> None:
    r = post(sb, "/rodin", [image()] * 5)
    assert r.status_code == 201 and r.json()["uuid"]


REFUSED_RODIN: list[dict[str, str]] = [
    {"seed": "-1"}, {"seed": "65536"}, {"seed": "abc"},
    {"quality": "ultra"}, {"mesh_mode": "Triangle"}, {"material": "Matte"},
    {"geometry_file_format": "gltf"}, {"condition_mode": "merge"},
    {"bbox_condition": "[1, 2]"}, {"bbox_condition": '["a", "b", "c"]'},
    {"bbox_condition": "1,2,3"}, {"preview_render": "maybe"},
    {"tier": "Gen-9"}, {"addons": '["LowPack"]'},
    {"addons": '["HighPack"]', "mesh_mode": "Raw"},  # the docs fix addons to none with Raw
    # whole numbers in ASCII digits only
    {"seed": "4_2"}, {"seed": "+5"}, {"seed": "\u0664\u0662"}, {"seed": "1e3"}, {"seed": "0x10"},
    {"seed": "9" * 30}, {"mesh_mode": "raw"},
    # an addon listed twice: whether the service bills it twice is documented nowhere
    {"addons": '["HighPack", "HighPack"]'}, {"addons": '["HighPack", "highpack"]'},
]


@pytest.mark.parametrize("fields", REFUSED_RODIN, ids=str)
def test_rodin_refuses_undocumented_values_without_charging(
        sb: Sandbox, fields: dict[str, str]) -> None:
    r = post(sb, "/rodin", form(prompt="x", **fields))
    assert_refusal(r, 400, "API_INVALID_REQUEST")
    assert sb.charges == [] and sb.balance == Decimal(100)


def test_rodin_refuses_bad_shapes_without_charging(sb: Sandbox) -> None:
    assert_refusal(post(sb, "/rodin", [image()] * 6), 400, "API_INVALID_REQUEST")
    assert_refusal(post(sb, "/rodin", form(tier="Sketch")), 400, "API_INVALID_REQUEST")
    assert_refusal(post(sb, "/rodin", json={"prompt": "x"}), 400, "API_INVALID_REQUEST")
    urlencoded = requests.post(sb.base_url + "/rodin", headers=auth(), data={"prompt": "x"},
                               timeout=10)
    assert_refusal(urlencoded, 400, "API_INVALID_REQUEST")
    # array fields sent as real arrays: the service answers 500 (looks retryable, is not)
    for name in ("addons", "bbox_condition"):
        r = post(sb, "/rodin", [*form(prompt="x"), (name, (None, "1")), (name, (None, "2"))])
        assert r.status_code == 500
    assert sb.charges == [] and sb.balance == Decimal(100)


@pytest.mark.parametrize("addons", ["HighPack", "HighPack,HighPack", "[not json"])
def test_addons_not_sent_as_a_json_string_is_a_500_without_charge(sb: Sandbox,
                                                                   addons: str) -> None:
    """RODIN_API.md: array fields must be sent as JSON strings, otherwise 500."""
    r = post(sb, "/rodin", form(prompt="x", addons=addons))
    assert r.status_code == 500 and r.json()["error"] == "INTERNAL_SERVER_ERROR"
    assert sb.charges == [] and sb.balance == Decimal(100)


# -- POST /rodin_texture_only and /bang ----------------------------------------------------


@pytest.mark.parametrize("fields", [{}, {"material": "PBR"}, {"material": "Shaded"},
                                    {"resolution": "Basic"}, {"resolution": "High"},
                                    {"prompt": "rust", "seed": "7"}], ids=str)
def test_texture_only_accepts_an_image_and_a_model(sb: Sandbox, fields: dict[str, str]) -> None:
    body = submit(sb, "/rodin_texture_only", [image("image"), model_file()], **fields)
    assert body["error"] is None and body["uuid"] and body["consumed"] == 0.5


@pytest.mark.parametrize(("files", "fields"), [
    ([model_file()], {}), ([image("image")], {}), ([], {"prompt": "x"}),
    ([image("image"), model_file()], {"material": "All"}),
    ([image("image"), model_file()], {"resolution": "Ultra"}),
    ([image("image"), model_file()], {"seed": "70000"}),
], ids=str)
def test_texture_only_refusals(sb: Sandbox, files: Files, fields: dict[str, str]) -> None:
    assert_refusal(post(sb, "/rodin_texture_only", [*files, *form(**fields)]), 400,
                   "API_INVALID_REQUEST")
    assert sb.charges == []


@pytest.mark.parametrize(("files", "fields"), [
    ([], {"asset_id": "asset-1", "strength": "2"}), ([], {"asset_id": "a", "strength": "12"}),
    ([model_file()], {"strength": "5"}),
], ids=str)
def test_bang_accepts_an_asset_or_a_model(sb: Sandbox, files: Files,
                                          fields: dict[str, str]) -> None:
    body = submit(sb, "/bang", files, **fields)
    assert body["error"] is None and body["uuid"] and body["consumed"] == 0.5


@pytest.mark.parametrize(("files", "fields"), [
    ([], {"strength": "5"}), ([], {"asset_id": "a", "strength": "1"}),
    ([], {"asset_id": "a", "strength": "13"}), ([], {"asset_id": "a"}),
    ([model_file()], {"strength": "x"}),
    ([], {"asset_id": "a", "strength": "+5"}), ([], {"asset_id": "a", "strength": "4_2"}),
    ([], {"asset_id": "a", "strength": "\u0665"}),
    # a format the service does not make would be charged and then listed as a dead link
    ([], {"asset_id": "a", "strength": "5", "geometry_file_format": "xyz"}),
    ([], {"asset_id": "a", "strength": "5", "geometry_file_format": "webp"}),
], ids=str)
def test_bang_refusals(sb: Sandbox, files: Files, fields: dict[str, str]) -> None:
    assert_refusal(post(sb, "/bang", [*files, *form(**fields)]), 400, "API_INVALID_REQUEST")
    assert_refusal(post(sb, "/bang", json={"asset_id": "a", "strength": 4}), 400,
                   "API_INVALID_REQUEST")
    assert sb.charges == []


# -- refusals: funds, parallelism, every documented code --------------------------------------


@pytest.mark.parametrize(("path", "extra", "fields"), [
    ("/rodin", [], {"prompt": "x", "tier": "Gen-2.5-Extreme-High"}),
    ("/rodin_texture_only", [image("image"), model_file()], {}),
    ("/bang", [], {"asset_id": "a", "strength": "3"}),
])
def test_insufficient_funds_is_201_with_the_documented_shape(
        sb: Sandbox, path: str, extra: Files, fields: dict[str, str]) -> None:
    sb.set_balance("0.4")
    r = post(sb, path, [*form(**fields), *extra])
    assert_refusal(r, 201, "API_INSUFFICIENT_FUNDS")
    assert "INSUFFICIENT_FUND" in r.json()["error"] and r.json()["message"] == INSUFFICIENT_MESSAGE
    assert sb.charges == [] and sb.balance == Decimal("0.4")


def test_parallelism_limit_refuses_without_charging() -> None:
    with Sandbox(balance="10", job_seconds=60, max_parallel=1) as sb:
        submit(sb)
        r = post(sb, "/rodin", form(prompt="second"))
        assert_refusal(r, 201, "API_PARALLELISM_LIMIT_REACHED")
        assert len(sb.charges) == 1 and sb.balance == Decimal("9.5")
        sb.job_seconds = 0  # the first task finishes: room again
        assert submit(sb)["uuid"]


def test_every_documented_error_code_has_a_live_spelling() -> None:
    from rodin_jupyter.sandbox import ERROR_MESSAGES

    for code in DOCUMENTED_CODES:
        assert any(code in live for live in ERROR_MESSAGES), code
    assert set(LIVE_CODES) <= set(ERROR_MESSAGES)


@pytest.mark.parametrize("code", LIVE_CODES)
def test_injected_refusals_have_the_documented_shape_and_cost_nothing(
        sb: Sandbox, code: str) -> None:
    sb.refuse(code)
    r = post(sb, "/rodin", form(prompt="x"))
    assert_refusal(r, 201, code)
    assert sb.charges == [] and submit(sb)["uuid"]  # one time only


# -- POST /status --------------------------------------------------------------------------


def test_status_answer_has_jobs_and_no_error_key(sb: Sandbox) -> None:
    created = submit(sb, preview_render="true")
    key = created["jobs"]["subscription_key"]
    seen: set[str] = set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = post(sb, "/status", json={"subscription_key": key})
        assert r.status_code == 200 and set(r.json()) == {"jobs"}
        jobs = r.json()["jobs"]
        assert [j["uuid"] for j in jobs] == created["jobs"]["uuids"]
        assert all(set(j) == {"uuid", "status"} for j in jobs)
        seen.update(j["status"] for j in jobs)
        if all(j["status"] == "Done" for j in jobs):
            break
        time.sleep(0.02)
    assert seen <= {"Waiting", "Generating", "Done"} and "Done" in seen


def test_status_refusals(sb: Sandbox) -> None:
    assert_refusal(post(sb, "/status", json={"subscription_key": "nope"}), 404,
                   "API_INVALID_REQUEST")
    assert_refusal(post(sb, "/status", json={}), 400, "API_INVALID_REQUEST")


@pytest.mark.parametrize(("job", "outcome", "expected"), [
    (None, "Failed", ["Failed", "Failed"]), (0, "Failed", ["Failed", "Done"]),
    (1, "Canceled", ["Done", "Canceled"]),
])
def test_a_failed_job_is_charged_and_ends_failed(
        sb: Sandbox, job: int | None, outcome: str, expected: list[str]) -> None:
    sb.fail_jobs(job=job, outcome=outcome)
    created = submit(sb, preview_render="true")
    assert wait_final(sb, created["jobs"]["subscription_key"]) == expected
    assert len(sb.charges) == 1  # the service bills a task whose job fails
    names = [i["name"] for i in post(sb, "/download", json={"task_uuid": created["uuid"]})
             .json()["list"]]
    outputs = zip(["model.glb", "preview.webp"], expected, strict=True)
    assert names == [name for name, state in outputs if state == "Done"]
    second = submit(sb)  # one task only
    assert wait_final(sb, second["jobs"]["subscription_key"]) == ["Done"]


def test_throttled_status_is_429_with_retry_after(sb: Sandbox) -> None:
    key = submit(sb)["jobs"]["subscription_key"]
    sb.throttle("/status", retry_after=2, times=2)
    for _ in range(2):
        r = post(sb, "/status", json={"subscription_key": key})
        assert r.status_code == 429 and r.headers["Retry-After"] == "2"
        assert set(r.json()) == {"error", "message"}
    assert post(sb, "/status", json={"subscription_key": key}).status_code == 200


# -- POST /download and the files ------------------------------------------------------------

MAGIC = {"glb": b"glTF", "usdz": b"PK\x03\x04", "fbx": b"; FBX", "obj": b"# rodin",
         "stl": b"solid"}


@pytest.mark.parametrize("fmt", FORMATS)
def test_download_lists_the_requested_format_and_a_preview(sb: Sandbox, fmt: str) -> None:
    created = submit(sb, geometry_file_format=fmt)
    wait_final(sb, created["jobs"]["subscription_key"])
    r = post(sb, "/download", json={"task_uuid": created["uuid"]})
    assert r.status_code == 200 and set(r.json()) == {"error", "list"}
    assert r.json()["error"] == "OK"
    items = r.json()["list"]
    assert [i["name"] for i in items] == [f"model.{fmt}", "preview.webp"]
    model = requests.get(items[0]["url"], timeout=10)  # presigned style: no key sent
    assert model.status_code == 200 and model.content.startswith(MAGIC[fmt])
    if fmt == "usdz":
        assert zipfile.ZipFile(BytesIO(model.content)).namelist() == ["model.usda"]
    preview = requests.get(items[1]["url"], timeout=10)
    assert preview.headers["Content-Type"] == "image/webp"
    assert preview.content[:4] == b"RIFF" and preview.content[8:12] == b"WEBP"


@pytest.mark.parametrize("fmt", FORMATS)
def test_bang_serves_the_format_it_charged_for(sb: Sandbox, fmt: str) -> None:
    created = submit(sb, "/bang", asset_id="a", strength="5", geometry_file_format=fmt)
    wait_final(sb, created["jobs"]["subscription_key"])
    items = post(sb, "/download", json={"task_uuid": created["uuid"]}).json()["list"]
    assert items[0]["name"] == f"model.{fmt}"
    for item in items:  # every listed link works: nothing charged for a dead link
        assert requests.get(item["url"], timeout=10).status_code == 200


def test_an_early_download_is_an_incomplete_list_not_a_refusal() -> None:
    with Sandbox(job_seconds=60) as sb:
        created = submit(sb)
        r = post(sb, "/download", json={"task_uuid": created["uuid"]})
        assert r.status_code == 200 and r.json() == {"error": "OK", "list": []}


def test_download_needs_the_task_uuid_not_a_job_uuid(sb: Sandbox) -> None:
    created = submit(sb)
    assert_refusal(post(sb, "/download", json={"task_uuid": created["jobs"]["uuids"][0]}), 404,
                   "API_INVALID_REQUEST")
    assert_refusal(post(sb, "/download", json={}), 400, "API_INVALID_REQUEST")


def test_download_urls_expire_and_asking_again_gives_fresh_ones(sb: Sandbox) -> None:
    created = submit(sb)
    wait_final(sb, created["jobs"]["subscription_key"])
    first = post(sb, "/download", json={"task_uuid": created["uuid"]}).json()["list"][0]["url"]
    assert requests.get(first, timeout=10).status_code == 200
    sb.expire_download_urls()
    expired = requests.get(first, timeout=10)
    assert expired.status_code == 403 and b"expired" in expired.content
    fresh = post(sb, "/download", json={"task_uuid": created["uuid"]}).json()["list"][0]["url"]
    assert fresh != first and requests.get(fresh, timeout=10).status_code == 200
    with Sandbox(job_seconds=0, url_ttl=0) as short:  # a TTL of 0: stale as soon as listed
        task = submit(short)["uuid"]
        url = post(short, "/download", json={"task_uuid": task}).json()["list"][0]["url"]
        assert requests.get(url, timeout=10).status_code == 403
    assert requests.get(first.rsplit("/", 2)[0] + "/nope/model.glb", timeout=10).status_code == 404


# -- the submit that is charged and then loses its connection ----------------------------------


def test_charged_then_dropped_submit_shows_a_retry_as_a_double_charge(sb: Sandbox) -> None:
    sb.drop_after_charge("/rodin")
    with pytest.raises(requests.exceptions.ConnectionError):
        post(sb, "/rodin", form(prompt="chair"))
    assert len(sb.charges) == 1 and sb.balance == Decimal("99.5")  # charged, no answer seen
    assert submit(sb, prompt="chair")["uuid"]  # what an automatic retry would do
    assert len(sb.charges) == 2 and sb.balance == Decimal(99)
