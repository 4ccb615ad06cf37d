"""``%rodin_guard``, ``%%rodin_guard``, ``%rodin_budget`` and ``%config RodinGuard``.

The traits forward to the core settings (:mod:`rodin_jupyter.balance.settings`) and to the
send-time guard's account: there is one copy of each value.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, Dict, Enum, Float, TraitError, observe, validate

from rodin_jupyter.balance.display import format_credits
from rodin_jupyter.balance.ledger import get_ledger
from rodin_jupyter.balance.settings import GuardSettings, settings
from rodin_jupyter.errors import PricingError
from rodin_jupyter.guard.decision import GuardBlocked
from rodin_jupyter.guard.price_table import PriceTable, load_prices
from rodin_jupyter.guard.pricing import estimate_cost
from rodin_jupyter.guard.sendtime import get_guard
from rodin_jupyter.ipython.cell_errors import CellStopped
from rodin_jupyter.ipython.cell_guard import NotebookSide
from rodin_jupyter.ipython.magics import parse_credits


def _warn(text: str) -> None:
    sys.stderr.write(text + "\n")


class GuardedCellFailed(CellStopped):
    """The body of a ``%%rodin_guard`` cell raised; its own error was shown above."""


@magics_class
class RodinGuard(Magics):
    """Checks each billable Hyper3D Rodin request as it is sent. ``%config RodinGuard``."""

    enabled = Bool(False, help="Check billable requests at send time (%rodin_guard on/off).").tag(
        config=True)
    prices = Dict(help="Price overrides merged over the defaults and RODIN_PRICES_FILE, e.g. "
                  "{'tiers': {'Gen-2': '0.6'}, 'addons': {'HighPack': '1.5'}}.").tag(config=True)
    on_error = Enum(["block", "allow"], GuardSettings.on_error,
                    help="When the balance cannot be read: 'block' the request (default) or "
                         "'allow' it with a warning.").tag(config=True)
    reserve = Float(float(GuardSettings.reserve),
                    help="Credits to keep: a request needs its price plus this.").tag(
        config=True)
    reading_max_age = Float(GuardSettings.reading_max_age,
                            help="Seconds one of the guard's balance readings, less "
                            "what this kernel spent since, may prove a request affordable; "
                            "otherwise the balance is read fresh.").tag(config=True)
    budget = Float(None, allow_none=True, help="Credits this kernel may spend from load on "
                   "(None: no budget). %rodin_budget sets it from now on.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        self.guard = get_guard()
        self.side = NotebookSide(shell)
        super().__init__(shell=shell, **kwargs)
        self._push_config()
        if self.budget is not None:  # from ipython_config.py; a reload keeps %rodin_budget's
            self.guard.account.set_budget(Decimal(str(self.budget)))
        self.side.attach()
        if self.enabled:
            self._install()
        elif self.guard.resume_on_load:  # %reload_ext keeps the guard on
            self.enabled = True
        self.guard.resume_on_load = False

    # -- settings ----------------------------------------------------------------------

    @validate("prices")
    def _valid_prices(self, proposal: Any) -> Any:
        try:
            PriceTable.from_mapping(proposal["value"])
        except PricingError as exc:
            raise TraitError(str(exc)) from None
        return proposal["value"]

    @validate("reserve", "reading_max_age", "budget")
    def _non_negative(self, proposal: Any) -> Any:
        value = proposal["value"]
        if value is not None and not value >= 0:
            raise TraitError(f"RodinGuard.{proposal['trait'].name} must be >= 0")
        return value

    @observe("prices", "on_error", "reserve", "reading_max_age")
    def _guard_settings_changed(self, change: Any) -> None:
        self._push_config()

    @observe("budget")
    def _budget_changed(self, change: Any) -> None:
        new = change["new"]
        self.guard.account.set_budget(None if new is None else Decimal(str(new)))

    @observe("enabled")
    def _enabled_changed(self, change: Any) -> None:
        if change["new"]:
            self._install()
        else:
            self._uninstall()

    def _push_config(self) -> None:
        settings.guard.prices = dict(self.prices)
        settings.guard.on_error = str(self.on_error)
        settings.guard.reserve = Decimal(str(self.reserve))
        settings.guard.reading_max_age = float(self.reading_max_age)

    def _install(self) -> None:
        self.guard.install()
        self.side.install()

    def _uninstall(self) -> None:
        self.guard.uninstall()
        self.side.uninstall()

    @property
    def _ip(self) -> Any:
        return self.shell

    def unload(self) -> None:
        """``%unload_ext``: every hooked attribute back, the shell check out."""
        self.guard.resume_on_load = self.guard.active
        self._uninstall()
        self.side.detach()

    # -- %rodin_guard / %%rodin_guard ----------------------------------------------------

    @magic_arguments()
    @argument("action", nargs="?", choices=["on", "off", "status"],
              help="Line form: turn the send-time guard on or off, or show its status.")
    @argument("--cost", metavar="N", help="Cell form: the cell costs N credits.")
    @argument("--tier", metavar="T", help="Cell form: price from this tier (e.g. Gen-2).")
    @argument("--addons", metavar="A", help="Cell form: addons, e.g. HighPack or "
              "'[\"HighPack\"]'.")
    @argument("--texture-mode", metavar="M", help="Cell form: texture_mode, e.g. extreme-high.")
    @argument("--endpoint", metavar="E", help="Cell form: rodin (default), "
              "rodin_texture_only or bang.")
    @argument("--count", metavar="K", type=int, help="Cell form: number of generations.")
    @argument("--reserve", metavar="R", help="Credits to keep besides the price.")
    @argument("--on-error", choices=["block", "allow"],
              help="When the balance cannot be read: block (default) or allow with a warning.")
    @line_cell_magic
    def rodin_guard(self, line: str = "", cell: str | None = None) -> None:
        """Guard Hyper3D Rodin spending.

        ``%rodin_guard on [--reserve R] [--on-error block|allow]``: from now on every POST to
        /rodin, /rodin_texture_only or /bang this kernel sends (requests, urllib3, urllib,
        http.client, httpx; any thread) is priced from its own fields and goes out only if
        the balance less the reserve and what is in flight covers it, and the budget
        allows it; otherwise GuardBlocked stops the cell in one line. ``%rodin_guard off``
        removes the hooks; ``%rodin_guard`` shows the status.

        ``%%rodin_guard --cost N`` or ``%%rodin_guard --tier T [--addons A] [--count K]``:
        read the balance now and run the body only if it covers the whole batch (each
        request in it is still checked as it is sent).
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
            print("Rodin guard off: billable requests go out unchecked.")
            return
        if args.action == "on":
            if args.reserve is not None:
                self.reserve = float(parse_credits(args.reserve, "--reserve"))
            if args.on_error is not None:
                self.on_error = args.on_error
            self.enabled = True
            print("Rodin guard on: each billable request goes out only if the balance"
                  + (f" less {format_credits(settings.guard.reserve)} reserve"
                     if settings.guard.reserve else "")
                  + " covers its price" + (" and the budget allows it"
                                           if self.budget is not None else "")
                  + f"; if the balance cannot be read: {settings.guard.on_error}.")
            return
        if args.reserve is not None or args.on_error is not None:
            raise CellStopped("--reserve and --on-error go with `%rodin_guard on`.")
        print(self.status())

    def status(self) -> str:
        account, ledger = self.guard.account, get_ledger()
        sent = [e for e in ledger.entries() if e.status == "sent"]
        budget = account.budget_left()
        return "\n".join([
            f"Rodin guard: {'on' if self.guard.active else 'off'} (checked at send time; "
            f"reserve {format_credits(settings.guard.reserve)}; on error: "
            f"{settings.guard.on_error}; budget: "
            + ("none" if budget is None else f"{format_credits(budget)} left") + ").",
            f"Billable requests checked: {self.guard.checked}; sent {len(sent)} for "
            f"{format_credits(ledger.total())} credits; in flight "
            f"{format_credits(account.in_flight)}.",
        ])

    def _cell_cost(self, args: Any) -> tuple[Decimal, str]:
        prices = load_prices(settings.guard.prices)
        explicit = [args.tier, args.addons, args.texture_mode, args.endpoint, args.count]
        if args.cost is not None:
            if any(v is not None for v in explicit):
                raise CellStopped("--cost is the whole cell's cost; do not combine it with "
                                  "--tier/--addons/--texture-mode/--endpoint/--count.")
            return parse_credits(args.cost, "--cost"), "this cell"
        if not any(v is not None for v in explicit):
            raise CellStopped("%%rodin_guard needs --cost N or --tier T [--count K]: the "
                              "upfront check does not guess a cell's cost.")
        count = 1 if args.count is None else args.count
        cost = estimate_cost(args.tier, args.addons, args.texture_mode,
                             args.endpoint or "rodin", count, prices)
        return cost, f"this cell ({count} generation{'s' if count != 1 else ''})"

    def _cell(self, args: Any, cell: str) -> None:
        if args.action is not None:
            raise CellStopped("In the cell form use --cost N or --tier T (not on/off).")
        try:
            cost, what = self._cell_cost(args)
        except PricingError as exc:
            raise GuardBlocked(f"guard: {str(exc).rstrip('.')}: cell not run") from None
        reserve = (parse_credits(args.reserve, "--reserve") if args.reserve is not None
                   else settings.guard.reserve)
        on_error = args.on_error or settings.guard.on_error
        self.guard.account.check_upfront(cost, what, reserve, on_error, _warn)
        was_on = self.guard.active
        self.guard.install()  # the body's requests are checked as they are sent, too
        try:
            result = self._ip.run_cell(cell)
        finally:
            if not was_on:
                self.guard.uninstall()
        if result is not None and not result.success:
            error = result.error_in_exec or result.error_before_exec
            if isinstance(error, GuardBlocked):
                raise GuardedCellFailed(f"the guarded cell stopped: {error}")
            name = type(error).__name__ if error is not None else "an error"
            raise GuardedCellFailed(f"the guarded cell failed ({name}); see above.")

    # -- %rodin_budget -----------------------------------------------------------------

    @line_magic
    def rodin_budget(self, line: str = "") -> None:
        """``%rodin_budget 5``: this kernel may spend at most 5 more credits (checked at send
        time with the balance); ``%rodin_budget`` shows spent and left; ``%rodin_budget off``.
        """
        text = line.strip()
        account = self.guard.account
        if text in ("off", "none"):
            self.budget = None
            account.set_budget(None)  # also when the trait was None already (after a reload)
            print("Rodin budget off.")
            return
        if text:
            try:
                value = Decimal(text)
            except ArithmeticError:
                value = Decimal(-1)
            if not value.is_finite() or value < 0:
                raise UsageError(f"%rodin_budget takes a number of credits >= 0 or 'off', "
                                 f"not {text!r}.")
            self.budget = float(value)
            account.set_budget(value)  # exact, and "from now on" even if the value is the same
            print(f"Rodin budget: {format_credits(value)} credits from now on.")
            return
        if account.budget is None:
            print(f"No Rodin budget set; sent this session: "
                  f"{format_credits(get_ledger().total())} credits.")
            return
        left = account.budget_left()
        print(f"Rodin budget: {format_credits(account.budget)} credits; spent "
              f"{format_credits(account.budget_spent())}, in flight "
              f"{format_credits(account.in_flight)}, left "
              f"{format_credits(max(left or Decimal(0), Decimal(0)))}.")
