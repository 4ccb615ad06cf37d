"""What a generation costs, from one price table a user can override.

Prices change; the table and its loading live in :mod:`rodin_jupyter.guard.price_table`
(``DEFAULT_PRICES``, ``RODIN_PRICES_FILE``, ``%config RodinGuard.prices``). Unknown tiers
and addons are errors: a guess could let a costly cell through. The sandbox charges with
this same table (through :func:`price_request`), so the estimate and the dry run never
disagree on a spelling.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal

from rodin_jupyter.errors import AddonsNotJSONError, PricingError
from rodin_jupyter.guard.price_table import PriceTable, default_prices

RAW_MESH_MODE = "Raw"
MESH_MODES = ("Raw", "Quad")  # docs: exactly these spellings
GENERATION_ENDPOINTS = ("rodin", "rodin_texture_only", "bang")


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
