"""The estimator and the sandbox charge the same, and both match the published price table.

Every documented tier (in several spellings) x addon x texture mode x endpoint is sent over
HTTP; the sandbox's charge (``consumed``, its ledger and the balance drop) must equal
``estimate_cost`` for the same settings and the figure transcribed here from the docs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from decimal import Decimal as D

import pytest
import requests

from rodin_jupyter.errors import PricingError
from rodin_jupyter.guard.price_table import FIELD_REPORT_PRICES, load_prices
from rodin_jupyter.guard.pricing import estimate_cost
from rodin_jupyter.sandbox import SANDBOX_KEY, Sandbox

# RODIN_API.md, "Prices": credits per call, as documented.
DOC_TIERS = {"Sketch": "0.5", "Regular": "0.5", "Detail": "0.5", "Smooth": "0.5", "Gen-2": "0.5",
             "Gen-2.5-Extreme-Low": "0.5", "Gen-2.5-Low": "0.5", "Gen-2.5-Medium": "0.5",
             "Gen-2.5-High": "0.5", "Gen-2.5-Extreme-High": "1.0"}
DOC_HIGHPACK = D("1.0")
DOC_FLAT = {"/rodin_texture_only": D("0.5"), "/bang": D("0.5")}
NO_TIER_MEANS = "Regular"
# On the wire addons is a JSON string (bare "HighPack" is a 500, see the contract suite).
ADDON_SPELLINGS = [None, "", "[]", '["HighPack"]', '[ " HighPack " ]', '["highpack"]']
Parts = list[tuple[str, tuple[str | None, bytes | str]]]
FLAT_REQUESTS: dict[str, Parts] = {
    "/rodin_texture_only": [("image", ("a.png", b"png")), ("model", ("m.glb", b"glb"))],
    "/bang": [("asset_id", (None, "asset-1")), ("strength", (None, "4"))],
}
AUTH = {"Authorization": f"Bearer {SANDBOX_KEY}"}


def spellings(tier: str) -> list[str]:
    return [tier, tier.lower(), tier.upper(), f" {tier} "]


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with Sandbox(balance="100000", job_seconds=0) as sandbox:
        yield sandbox


def send(sb: Sandbox, path: str, fields: Mapping[str, str | None],
         extra: Parts | None = None) -> requests.Response:
    files = [(k, (None, v)) for k, v in fields.items() if v is not None]
    return requests.post(sb.base_url + path, headers=AUTH, files=[*files, *(extra or [])],
                         timeout=10)


def charged(sb: Sandbox, response: requests.Response, before: D) -> D:
    """The charge three ways (answer, ledger, balance drop), which must agree."""
    assert response.status_code == 201, response.text
    consumed = D(str(response.json()["consumed"]))
    last = sb.charges[-1]
    assert last.task_uuid == response.json()["uuid"] and last.credits == consumed
    assert before - sb.balance == consumed
    return consumed


def doc_price(tier: str | None, addons: str | None) -> D:
    wanted = (tier or NO_TIER_MEANS).strip().lower()
    price = D(next(v for k, v in DOC_TIERS.items() if k.lower() == wanted))
    return price + (DOC_HIGHPACK if addons and "highpack" in addons.lower() else 0)


def test_every_tier_addon_and_texture_mode_agrees() -> None:
    with Sandbox(balance="100000", job_seconds=0) as sb:
        tiers = [None, *itertools.chain.from_iterable(spellings(t) for t in DOC_TIERS)]
        cases = 0
        for tier, addons, texture in itertools.product(tiers, ADDON_SPELLINGS,
                                                       [None, "extreme-high"]):
            before = sb.balance
            fields = {"prompt": "x", "tier": tier, "addons": addons, "texture_mode": texture}
            got = charged(sb, send(sb, "/rodin", fields), before)
            assert got == estimate_cost(tier, addons, texture) == doc_price(tier, addons), fields
            cases += 1
        assert cases == len(tiers) * len(ADDON_SPELLINGS) * 2 == len(sb.charges)


@pytest.mark.parametrize("path", list(FLAT_REQUESTS))
def test_flat_endpoints_agree(sb: Sandbox, path: str) -> None:
    before = sb.balance
    got = charged(sb, send(sb, path, {}, FLAT_REQUESTS[path]), before)
    assert got == estimate_cost(endpoint=path) == DOC_FLAT[path]


def test_the_field_report_override_changes_both_the_same_way() -> None:
    table = load_prices(FIELD_REPORT_PRICES)
    with Sandbox(balance="100", job_seconds=0, prices=FIELD_REPORT_PRICES) as sb:
        for tier in ("Gen-2.5-High", "Gen-2.5-Extreme-High"):
            before = sb.balance
            fields = {"prompt": "x", "tier": tier, "addons": '["HighPack"]',
                      "texture_mode": "extreme-high"}
            got = charged(sb, send(sb, "/rodin", fields), before)
            assert got == estimate_cost(tier, '["HighPack"]', "extreme-high", prices=table)
            assert got == D(DOC_TIERS[tier]) + DOC_HIGHPACK + D("2.0")


@pytest.mark.parametrize("fields", [
    {"tier": "Gen-9"}, {"tier": "Gen 2"}, {"addons": '["LowPack"]'}, {"addons": '{"a": 1}'},
    {"addons": '["HighPack"]', "mesh_mode": "Raw"},
    # mesh_mode is spelled exactly Raw or Quad by both; a repeated addon is refused by both
    {"addons": '["HighPack"]', "mesh_mode": "raw"}, {"mesh_mode": "quad"}, {"mesh_mode": ""},
    {"addons": '["HighPack", "HighPack"]'}, {"addons": '["HighPack", "highpack"]'},
], ids=str)
def test_what_the_estimator_refuses_the_sandbox_refuses(sb: Sandbox,
                                                        fields: dict[str, str]) -> None:
    with pytest.raises(PricingError):
        estimate_cost(fields.get("tier"), fields.get("addons"),
                      mesh_mode=fields.get("mesh_mode"))
    r = send(sb, "/rodin", {"prompt": "x", **fields})
    assert r.status_code == 400 and r.json()["error"] == "API_INVALID_REQUEST"
    assert sb.charges == []
