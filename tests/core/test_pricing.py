"""The price table follows the published facts; the field report is an opt-in override."""

from __future__ import annotations

from decimal import Decimal
from decimal import Decimal as D
from pathlib import Path

import pytest

from rodin_jupyter.errors import PricingError
from rodin_jupyter.guard.price_table import FIELD_REPORT_PRICES, load_prices
from rodin_jupyter.guard.pricing import price_request


def test_texture_mode_costs_nothing_unless_the_field_report_is_switched_on() -> None:
    fields = {"tier": "Gen-2.5-High", "texture_mode": "extreme-high"}
    assert price_request("rodin", fields) == D("0.5")
    assert price_request("rodin", fields, load_prices(FIELD_REPORT_PRICES)) == D("2.5")
    assert price_request("rodin", {**fields, "texture_mode": "Extreme-High"},
                         load_prices(FIELD_REPORT_PRICES)) == D("2.5")


def test_addons_with_raw_mesh_mode_are_refused_not_guessed() -> None:
    with pytest.raises(PricingError, match="mesh_mode=Raw"):
        price_request("rodin", {"tier": "Regular", "addons": '["HighPack"]', "mesh_mode": "Raw"})
    assert price_request("rodin", {"tier": "Regular", "mesh_mode": "Raw"}) == D("0.5")
    assert price_request("rodin", {"addons": '["HighPack"]', "mesh_mode": "Quad"}) == D("1.5")


def test_the_price_table_is_rebuilt_only_when_its_file_or_overrides_change(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every billable request asks for the table: the same inputs give the same table object,
    and an edit of the prices file (same size, same instant) still counts."""
    from rodin_jupyter.guard.price_table import PRICES_FILE_VARIABLE, load_prices

    prices = tmp_path / "prices.json"
    prices.write_text('{"tiers": {"Gen-2": "0.7"}}')
    monkeypatch.setenv(PRICES_FILE_VARIABLE, str(prices))
    first = load_prices()
    assert load_prices() is first and first.tiers["Gen-2"] == Decimal("0.7")
    prices.write_text('{"tiers": {"Gen-2": "0.9"}}')
    assert load_prices().tiers["Gen-2"] == Decimal("0.9")
    assert load_prices({"tiers": {"Gen-2": "2"}}).tiers["Gen-2"] == Decimal("2")
    monkeypatch.delenv(PRICES_FILE_VARIABLE)
    assert load_prices().tiers["Gen-2"] == Decimal("0.5")
