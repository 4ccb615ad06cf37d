"""The price table: the built-in prices, a user's overrides, and the cached load of both.

The table is data (``DEFAULT_PRICES``), overridable from a JSON file (``RODIN_PRICES_FILE``)
or ``%config RodinGuard.prices``; :mod:`rodin_jupyter.guard.pricing` prices requests with it.
Sources (see /work/shared/RODIN_API.md, "Prices"): "docs" = Hyper3D's public API pricing
page (English and Chinese); "field" = a report from a public client, not the docs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from rodin_jupyter.errors import PricingError

DEFAULT_PRICES: dict[str, Any] = {
    "tiers": {
        # docs: Gen-1 / Gen-1.5 tiers, 0.5 each
        "Sketch": "0.5", "Regular": "0.5", "Detail": "0.5", "Smooth": "0.5",
        # docs: Gen-2, 0.5
        "Gen-2": "0.5",
        # docs: Gen-2.5 tiers, 0.5 each except Extreme-High
        "Gen-2.5-Extreme-Low": "0.5", "Gen-2.5-Low": "0.5", "Gen-2.5-Medium": "0.5",
        "Gen-2.5-High": "0.5",
        # docs: Gen-2.5-Extreme-High, 1.0
        "Gen-2.5-Extreme-High": "1.0",
    },
    # docs: addon HighPack (4K textures, high-poly), +1.0; with mesh_mode=Raw the docs fix
    # addons to none, so that combination is refused (see price_request), not guessed.
    "addons": {"HighPack": "1.0"},
    # docs: "no additional fees for parameters, only addons" (two transcriptions), so no
    # texture mode costs extra by default. FIELD_REPORT_PRICES holds the one field report
    # (extreme-high +2.0) as an override a user can switch on.
    "texture_modes": {},
    # docs: rodin_texture_only and bang, 0.5 each (resolution=High: stated nowhere)
    "endpoints": {"rodin_texture_only": "0.5", "bang": "0.5"},
    # docs: a request with no tier falls back to Gen-1 Regular
    "default_tier": "Regular",
}
FIELD_REPORT_PRICES: dict[str, Any] = {
    # field: one public client's report that texture_mode=extreme-high (Gen-2.5) costs +2.0;
    # switch it on with %config RodinGuard.prices = FIELD_REPORT_PRICES (or a prices file).
    "texture_modes": {"extreme-high": "2.0"},
}
PRICES_FILE_VARIABLE = "RODIN_PRICES_FILE"


def _credits(value: Any, where: str) -> Decimal:
    if isinstance(value, bool):
        raise PricingError(f"Price for {where} must be a number.")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise PricingError(f"Price for {where} must be a number, not {value!r}.") from None
    if not number.is_finite() or number < 0:
        raise PricingError(f"Price for {where} must be a non-negative number.")
    return number


@dataclass(frozen=True)
class PriceTable:
    """Credits per tier, addon, texture mode and fixed-price endpoint."""

    tiers: Mapping[str, Decimal]
    addons: Mapping[str, Decimal]
    texture_modes: Mapping[str, Decimal]
    endpoints: Mapping[str, Decimal]
    default_tier: str

    @classmethod
    def from_mapping(cls, overrides: Mapping[str, Any] | None = None) -> PriceTable:
        """The default table with ``overrides`` merged in, section by section."""
        merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v)
                                  for k, v in DEFAULT_PRICES.items()}
        for part, value in (overrides or {}).items():
            if part not in DEFAULT_PRICES:
                raise PricingError(f"Unknown price table section {part!r}.")
            if isinstance(merged[part], dict):
                if not isinstance(value, Mapping):
                    raise PricingError(f"Price table section {part!r} must be a mapping.")
                merged[part].update(value)
            else:
                merged[part] = str(value)

        def section(name: str) -> dict[str, Decimal]:
            return {k: _credits(v, f"{name} {k}") for k, v in merged[name].items()}

        table = cls(section("tiers"), section("addons"), section("texture_modes"),
                    section("endpoints"), merged["default_tier"])
        if table.default_tier not in table.tiers:
            raise PricingError(f"The default tier {table.default_tier!r} has no price.")
        return table

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PriceTable:
        """A table from a JSON file holding overrides (same shape as ``DEFAULT_PRICES``)."""
        return cls.from_mapping(_read_price_file(path))

    def canonical_tier(self, tier: str) -> str:
        """The table's spelling of ``tier`` (case-insensitive), or a PricingError."""
        for name in self.tiers:
            if name.lower() == tier.strip().lower():
                return name
        known = ", ".join(self.tiers)
        raise PricingError(f"Unknown Rodin tier {tier!r}; known tiers: {known}.")

    def cheapest(self) -> Decimal:
        """The least any billable request costs: below it, nothing can be afforded."""
        return min([*self.tiers.values(), *self.endpoints.values()])


def _read_price_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PricingError(f"Could not read the price file {path}: "
                           f"{type(exc).__name__}.") from None
    if not isinstance(data, dict):
        raise PricingError(f"The price file {path} must hold a JSON object.")
    return data


TableKey = tuple[str | None, bytes | None, str]
_last_table: tuple[TableKey, PriceTable] | None = None


def load_prices(overrides: Mapping[str, Any] | None = None) -> PriceTable:
    """The price table: defaults, then ``RODIN_PRICES_FILE``, then ``overrides`` (``%config``).

    Every billable request and panel render asks for it: the last table is reused while the
    file's bytes and the overrides are unchanged (a small read, not a rebuild of the table).
    """
    global _last_table
    path = os.environ.get(PRICES_FILE_VARIABLE)
    try:
        raw = Path(path).read_bytes() if path else None
    except OSError:
        raw = None  # unreadable: _read_price_file says why, every time
    key: TableKey = (path, raw, json.dumps(overrides or {}, sort_keys=True, default=str))
    if _last_table is not None and _last_table[0] == key:
        return _last_table[1]
    merged: dict[str, Any] = {}
    if path:
        merged.update(_read_price_file(path))
    for part, value in (overrides or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(part), Mapping):
            merged[part] = {**merged[part], **value}
        else:
            merged[part] = value
    _last_table = (key, PriceTable.from_mapping(merged))
    return _last_table[1]


def default_prices() -> PriceTable:
    """The built-in table, with ``RODIN_PRICES_FILE`` applied when set."""
    return load_prices()
