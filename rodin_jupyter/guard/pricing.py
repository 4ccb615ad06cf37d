"""What a generation costs, from one price table a user can override.

Prices change; the table is data (``DEFAULT_PRICES``), overridable from a JSON file
(``RODIN_PRICES_FILE``) or ``%config RodinGuard.prices``. Unknown tiers and addons are
errors: a guess could let a costly cell through. The sandbox charges with this same table
(through :func:`price_request`), so the estimate and the dry run never disagree on a spelling.

Sources (see /work/shared/RODIN_API.md, "Prices"): "docs" = Hyper3D's public API pricing
page (English and Chinese); "field" = a report from a public client, not the docs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from rodin_jupyter.errors import AddonsNotJSONError, PricingError

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
RAW_MESH_MODE = "Raw"
MESH_MODES = ("Raw", "Quad")  # docs: exactly these spellings
PRICES_FILE_VARIABLE = "RODIN_PRICES_FILE"
GENERATION_ENDPOINTS = ("rodin", "rodin_texture_only", "bang")


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


def unique_addons(names: Iterable[str]) -> list[str]:
    """The one duplicate rule: an addon listed twice (in any case) is refused, not guessed.

    Whether the service bills a repeated addon once or twice is documented nowhere, so the
    estimate, the guard and the sandbox all refuse it rather than pick an answer.
    """
    seen: set[str] = set()
    result: list[str] = []
    for name in names:
        key = name.strip().lower()
        if key in seen:
            raise PricingError(f"The addon {name.strip()!r} is listed twice; list each addon once.")
        seen.add(key)
        result.append(name.strip())
    return result


def wire_addons(text: str) -> list[str]:
    """``addons`` as a request carries it: a JSON-string array such as ``'["HighPack"]'``.

    The docs say array fields must be sent as JSON strings, otherwise the service answers
    500: text that is not JSON (``HighPack``, ``HighPack,HighPack``) raises
    :class:`AddonsNotJSONError`; JSON that is not a list of names raises PricingError.
    An empty value means no addons.
    """
    stripped = text.strip()
    if not stripped:
        return []
    try:
        value = json.loads(stripped)
    except ValueError:
        raise AddonsNotJSONError(f"Addons {text[:60]!r} must be sent as a JSON string such as "
                                 "'[\"HighPack\"]' (the service answers 500 otherwise).") from None
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise PricingError(f"Addons {text[:60]!r} must be a JSON list of names.")
    return unique_addons(value)


def parse_addons(addons: str | Iterable[str] | None) -> list[str]:
    """Addons from Python: a JSON string ``'["HighPack"]'``, a name (or comma list), or a list.

    Lenient on purpose (``estimate_cost(addons="HighPack")``); what a request sends is read
    by :func:`wire_addons`. Either way a repeated addon is refused (:func:`unique_addons`).
    """
    if addons is None:
        return []
    if isinstance(addons, str):
        text = addons.strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                return wire_addons(text)
            except AddonsNotJSONError:
                raise PricingError(f"Addons {addons!r} are not a valid JSON list.") from None
        return unique_addons(part for part in text.split(",") if part.strip())
    return unique_addons(str(a) for a in addons)


def check_mesh_mode(mesh_mode: str | None) -> str | None:
    """``mesh_mode`` spelled exactly as documented (Raw or Quad, spaces aside), as the
    sandbox requires; any other spelling is refused rather than priced."""
    if mesh_mode is None:
        return None
    if mesh_mode.strip() not in MESH_MODES:
        raise PricingError(f"mesh_mode must be one of {', '.join(MESH_MODES)}, "
                           f"not {mesh_mode[:40]!r}.")
    return mesh_mode.strip()


def endpoint_name(endpoint: str) -> str:
    """``"/api/v2/rodin"`` or ``"/rodin"`` -> ``"rodin"``."""
    return endpoint.strip().strip("/").rsplit("/", 1)[-1]


def estimate_cost(
    tier: str | None = None,
    addons: str | Iterable[str] | None = None,
    texture_mode: str | None = None,
    endpoint: str = "rodin",
    count: int = 1,
    prices: PriceTable | None = None,
    mesh_mode: str | None = None,
) -> Decimal:
    """Credits that ``count`` generations with these settings will take, before sending any.

    An addon with ``mesh_mode="Raw"`` is a PricingError: the docs fix addons to none there,
    and neither +0 (the service might bill it) nor +1 (it might not) is a safe guess. So is
    an addon listed twice, and a ``mesh_mode`` not spelled Raw or Quad (as the sandbox).

    >>> estimate_cost("Gen-2.5-Extreme-High", addons='["HighPack"]')
    Decimal('2.0')
    """
    table = prices or default_prices()
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise PricingError(f"The generation count must be a whole number >= 0, not {count!r}.")
    name = endpoint_name(endpoint)
    if name in table.endpoints:
        return table.endpoints[name] * count
    if name != "rodin":
        raise PricingError(f"Unknown Rodin endpoint {endpoint!r}; expected one of "
                           f"{', '.join(GENERATION_ENDPOINTS)}.")
    cost = table.tiers[table.canonical_tier(tier or table.default_tier)]
    mode = check_mesh_mode(mesh_mode)
    names = parse_addons(addons)
    if names and mode == RAW_MESH_MODE:
        raise PricingError(f"Addons ({', '.join(names)}) do not apply with mesh_mode=Raw (the "
                           "docs fix them to none): drop the addons or use mesh_mode=Quad.")
    for addon in names:
        match = next((a for a in table.addons if a.lower() == addon.lower()), None)
        if match is None:
            raise PricingError(f"Unknown Rodin addon {addon!r}; known addons: "
                               f"{', '.join(table.addons)}.")
        cost += table.addons[match]
    if texture_mode:
        wanted = texture_mode.strip().lower()
        cost += next((v for k, v in table.texture_modes.items() if k.lower() == wanted),
                     Decimal(0))
    return cost * count


def price_request(
    endpoint: str,
    fields: Mapping[str, str | Iterable[str]],
    prices: PriceTable | None = None,
) -> Decimal:
    """Credits one billable request costs, from the fields it actually sends.

    ``fields`` is the request's form (or JSON) fields by name; a repeated field is a list.
    Unknown or unreadable price-relevant values raise PricingError (never a guess): this is
    what the send-time guard charges against the balance and what the ledger records.
    ``addons`` follows the wire rule (a JSON string, see :func:`wire_addons`).
    """

    def single(name: str) -> str | None:
        value = fields.get(name)
        if value is None or isinstance(value, str):
            return value
        values = list(value)
        if len(values) > 1:
            raise PricingError(f"The field {name!r} is sent {len(values)} times; send it once.")
        return values[0] if values else None

    addons = single("addons")  # only /rodin takes addons; the flat endpoints ignore them
    names = wire_addons(addons or "") if endpoint_name(endpoint) == "rodin" else None
    return estimate_cost(tier=single("tier"), addons=names,
                         texture_mode=single("texture_mode"), endpoint=endpoint, prices=prices,
                         mesh_mode=single("mesh_mode"))
