"""``%rodin_guard`` / ``%%rodin_guard`` and the settings behind ``%config RodinGuard``."""

from __future__ import annotations

import ast
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Dict, Enum, Float, List, TraitError, Unicode, observe, validate

from rodin_jupyter.balance.monitor import LedgerEntry, format_credits, get_monitor
from rodin_jupyter.errors import PricingError
from rodin_jupyter.guard.cell_analysis import CellAnalyzer
from rodin_jupyter.guard.pricing import PriceTable, estimate_cost, load_prices
from rodin_jupyter.ipython.cell_errors import CellStopped
from rodin_jupyter.ipython.cell_guard import (
    AutoGuard,
    GuardBlocked,
    GuardConfig,
    estimate_sites,
    read_balance_for,
)
from rodin_jupyter.ipython.magics import parse_credits


class GuardedCellFailed(CellStopped):
    """The body of a ``%%rodin_guard`` cell raised; its own error was shown above."""


@magics_class
class RodinGuard(Magics):
    """Stops Hyper3D Rodin generation cells when the balance cannot cover them.

    Settings: ``%config RodinGuard``.
    """

    enabled = Bool(False, help="Check generation cells automatically (%rodin_guard on/off).").tag(
        config=True)
    functions = List(Unicode(), help="Extra function names whose calls spend credits, e.g. "
                     "['submit', 'client.generate'].").tag(config=True)
    prices = Dict(help="Price overrides merged over the defaults and RODIN_PRICES_FILE, e.g. "
                  "{'tiers': {'Gen-2': '0.6'}, 'addons': {'HighPack': '1.5'}}.").tag(config=True)
    on_error = Enum(["block", "allow"], "block",
                    help="When the balance cannot be read: 'block' the cell (default) or "
                         "'allow' it with a warning.").tag(config=True)
    reserve = Float(0.0, help="Credits to keep: a cell needs its cost plus this.").tag(
        config=True)
    minimum = Float(None, allow_none=True,
                    help="Credits assumed per generation call at least (its floor when the "
                         "cell does not show tier/addons). None: RodinMagics.min_balance.").tag(
        config=True)
    cache_ttl = Float(0.0, help="Seconds a balance reading may be reused by the automatic "
                      "guard. 0 (default): read it fresh for every generation cell.").tag(
        config=True)
    learn = Bool(True, help="Learn helper functions and URL variables defined in cells that "
                 "name a generation endpoint, and guard their later use.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        # Before super().__init__: config (c.RodinGuard.enabled = True) is applied there.
        self.guard = AutoGuard(shell, GuardConfig())
        super().__init__(shell=shell, **kwargs)
        self._push_config()
        if self.enabled:
            self.guard.install()

    # -- settings ----------------------------------------------------------------------

    @validate("prices")
    def _valid_prices(self, proposal: Any) -> Any:
        try:
            PriceTable.from_mapping(proposal["value"])
        except PricingError as exc:
            raise TraitError(str(exc)) from None
        return proposal["value"]

    @validate("reserve", "cache_ttl")
    def _non_negative(self, proposal: Any) -> Any:
        if proposal["value"] < 0:
            raise TraitError(f"{proposal['trait'].name} must be >= 0")
        return proposal["value"]

    @observe("functions", "prices", "on_error", "reserve", "minimum", "cache_ttl", "learn")
    def _guard_settings_changed(self, change: Any) -> None:
        self._push_config()

    @observe("enabled")
    def _enabled_changed(self, change: Any) -> None:
        if change["new"]:
            self.guard.install()
        else:
            self.guard.uninstall()

    def _push_config(self) -> None:
        cfg = self.guard.config
        cfg.functions = tuple(self.functions)
        cfg.prices = dict(self.prices)
        cfg.on_error = str(self.on_error)
        cfg.reserve = Decimal(str(self.reserve))
        cfg.minimum = None if self.minimum is None else Decimal(str(self.minimum))
        cfg.cache_ttl = float(self.cache_ttl)
        cfg.learn = bool(self.learn)

    @property
    def _ip(self) -> Any:
        return self.shell

    def unload(self) -> None:
        """``%unload_ext``: remove the gate, the AST transformer and the event callback."""
        self.guard.uninstall()

    # -- %rodin_guard / %%rodin_guard ----------------------------------------------------

    @magic_arguments()
    @argument("action", nargs="?", choices=["on", "off", "status"],
              help="Line form: turn the automatic guard on or off, or show its status.")
    @argument("--cost", metavar="N", help="Cell form: the cell costs N credits.")
    @argument("--tier", metavar="T", help="Cell form: estimate from this tier (e.g. Gen-2).")
    @argument("--addons", metavar="A", help="Cell form: addons, e.g. HighPack or "
              "'[\"HighPack\"]'.")
    @argument("--texture-mode", metavar="M", help="Cell form: texture_mode, e.g. extreme-high.")
    @argument("--endpoint", metavar="E", help="Cell form: rodin (default), "
              "rodin_texture_only or bang.")
    @argument("--count", metavar="K", type=int, help="Cell form: number of generations.")
    @argument("--reserve", metavar="R", help="Credits to keep besides the cost.")
    @argument("--min", metavar="N", dest="minimum",
              help="Line form: credits assumed per generation call at least.")
    @argument("--on-error", choices=["block", "allow"],
              help="When the balance cannot be read: block (default) or allow with a warning.")
    @line_cell_magic
    def rodin_guard(self, line: str = "", cell: str | None = None) -> None:
        """Guard Hyper3D Rodin generation cells against a short balance.

        ``%rodin_guard on [--min N] [--reserve R] [--on-error block|allow]``: check every
        cell that calls /rodin, /rodin_texture_only or /bang (or a configured function)
        before it runs; a cell the balance cannot cover is not run, and Run All stops.
        ``%rodin_guard off`` turns that off; ``%rodin_guard`` shows the status.

        ``%%rodin_guard --cost N`` or ``%%rodin_guard --tier T [--addons A] [--count K]``
        (``--reserve R``): read the balance now and run the cell body only if it covers
        the cost. Without --cost/--tier the cost is estimated from the body.
        """
        try:
            args = parse_argstring(self.rodin_guard, line)
        except Exception as exc:  # argparse's UsageError: one line is enough
            raise CellStopped(str(exc).splitlines()[-1]) from None
        if cell is None:
            self._line(args)
        else:
            self._cell(args, cell)

    def _line(self, args: Any) -> None:
        cell_only = [f"--{n.replace('_', '-')}" for n in ("cost", "tier", "addons",
                                                          "texture_mode", "endpoint", "count")
                     if getattr(args, n) is not None]
        if cell_only:
            raise CellStopped(f"{', '.join(cell_only)} only work in the cell form "
                              "(%%rodin_guard).")
        if args.action == "off":
            self.enabled = False
            print("Rodin guard off: generation cells run without a balance check.")
            return
        if args.action == "on":
            if args.minimum is not None:
                self.minimum = float(parse_credits(args.minimum, "--min"))
            if args.reserve is not None:
                self.reserve = float(parse_credits(args.reserve, "--reserve"))
            if args.on_error is not None:
                self.on_error = args.on_error
            self.enabled = True
            cfg = self.guard.config
            print("Rodin guard on: a generation cell runs only if the balance covers its "
                  f"estimated cost (at least {format_credits(cfg.min_cost())} per call)"
                  + (f" + {format_credits(cfg.reserve)} reserve" if cfg.reserve else "")
                  + f"; if the balance cannot be read: {cfg.on_error}.")
            return
        if args.minimum is not None or args.reserve is not None or args.on_error is not None:
            raise CellStopped("--min, --reserve and --on-error go with `%rodin_guard on`.")
        print(self.guard.status())

    def _cell_cost(self, args: Any, cell: str) -> tuple[Decimal, str]:
        prices = load_prices(self.guard.config.prices)
        explicit = [args.tier, args.addons, args.texture_mode, args.endpoint, args.count]
        if args.cost is not None:
            if any(v is not None for v in explicit):
                raise CellStopped("--cost is the whole cell's cost; do not combine it with "
                                  "--tier/--addons/--texture-mode/--endpoint/--count.")
            return parse_credits(args.cost, "--cost"), ""
        if any(v is not None for v in explicit):
            count = 1 if args.count is None else args.count
            cost = estimate_cost(args.tier, args.addons, args.texture_mode,
                                 args.endpoint or "rodin", count, prices)
            return cost, f"{count} generation{'s' if count != 1 else ''}"
        minimum = self.guard.config.min_cost()
        try:
            code = self._ip.input_transformer_manager.transform_cell(cell)
            module = ast.parse(code)
        except (SyntaxError, ValueError):
            return minimum, "estimated"  # the body's own SyntaxError shows when it runs
        analysis = CellAnalyzer(self.guard.config.functions, self.guard.learned_functions,
                                self.guard.learned_urls, self._ip.user_ns,
                                self._ip.input_transformer_manager.transform_cell,
                                learn=False).analyze(module)
        if not analysis.sites:
            return minimum, "no generation call recognised; the minimum"
        estimate = estimate_sites(analysis.sites, prices, minimum)
        return estimate.total, estimate.describe()

    def _cell(self, args: Any, cell: str) -> None:
        if args.action is not None or args.minimum is not None:
            raise CellStopped("In the cell form use --cost N or --tier T (not on/off/--min).")
        try:
            cost, detail = self._cell_cost(args, cell)
        except PricingError as exc:
            raise GuardBlocked(f"{str(exc).rstrip('.')}: cell not run") from None
        cfg = self.guard.config
        reserve = (parse_credits(args.reserve, "--reserve") if args.reserve is not None
                   else cfg.reserve)
        on_error = args.on_error or cfg.on_error
        # Always a fresh reading: the explicit guard exists to be sure right now.
        reading = read_balance_for(cost, reserve, on_error, 0.0, detail)
        at = datetime.now(timezone.utc)
        with self.guard.suspended():
            result = self._ip.run_cell(cell)
        if reading is not None:
            try:
                after: Decimal | None = get_monitor().refresh().balance
            except Exception:
                after = None
            label = f"In [{max(0, self._ip.execution_count - 1)}] %%rodin_guard"
            get_monitor().add_ledger_entry(LedgerEntry(label, cost, reading.balance, after, at))
        if result is not None and not result.success:
            error = result.error_in_exec or result.error_before_exec
            name = type(error).__name__ if error is not None else "an error"
            raise GuardedCellFailed(f"the guarded cell failed ({name}); see above.")
