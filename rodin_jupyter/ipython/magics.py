"""``%rodin_balance`` and the settings behind ``%config RodinMagics``."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import warnings
from decimal import Decimal, InvalidOperation
from typing import Any

from IPython.core.magic import Magics, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Float, TraitError, Unicode, observe, validate

from rodin_jupyter.balance.connect import apply_client_settings
from rodin_jupyter.balance.ledger import LedgerView, get_ledger
from rodin_jupyter.balance.monitor import get_monitor
from rodin_jupyter.balance.settings import (
    MIN_REFRESH_INTERVAL,
    READ_TIMEOUT_LIMIT,
    BalanceSettings,
    ClientSettings,
    check_balance_scale,
    settings,
)
from rodin_jupyter.balance.text import Balance
from rodin_jupyter.errors import RodinError
from rodin_jupyter.ipython.cell_errors import CellStopped


class ConfigRefused(TraitError, RodinError):
    """A refused ``%config RodinMagics.x = v``: the cell fails with this one line.

    IPython's ``%config`` catches every exception and logs it (``ERROR:root:...``) while the
    cell succeeds; this class marks our refusals so the log record is dropped and the
    ``post_run_cell`` hook fails the cell with the one line instead.
    """


def _not_ours(record: logging.LogRecord) -> bool:
    """Root logger filter: drop ``%config``'s log record of a refusal we show ourselves."""
    return not isinstance(record.msg, ConfigRefused)


def parse_credits(text: str, option: str) -> Decimal:
    """A credit amount from a magic's argument, or a one-line error."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise CellStopped(f"{option} takes a number of credits, not {text!r}.") from None
    if not value.is_finite() or value < 0:
        raise CellStopped(f"{option} takes a non-negative number of credits.")
    return value


@magics_class
class RodinMagics(Magics):
    """Balance magics for the Hyper3D Rodin API. Settings: ``%config RodinMagics``."""

    base_url = Unicode(
        ClientSettings.base_url,
        help="Rodin API base URL. Empty: RODIN_API_BASE, else the real service.",
    ).tag(config=True)
    connect_timeout = Float(ClientSettings.connect_timeout,
                            help="Seconds to wait for a connection.").tag(config=True)
    read_timeout = Float(ClientSettings.read_timeout,
                         help="Seconds to wait for an answer (<= 10).").tag(config=True)
    deadline = Float(ClientSettings.deadline,
                     help="Seconds a balance check may take in all, retries included.").tag(
        config=True)
    warn_below = Float(float(BalanceSettings.warn_below),
                       help="Balance below which the panel shows 'low'.").tag(config=True)
    min_balance = Float(None, allow_none=True,
                        help="Balance below which the panel shows 'too low' (display only). "
                             "None: the cheapest price in the guard's price table.").tag(
        config=True)
    refresh_interval = Float(BalanceSettings.refresh_interval,
                             help="Seconds between automatic panel refreshes (>= 10).").tag(
        config=True)
    cached_max_age = Float(BalanceSettings.cached_max_age,
                           help="Seconds a reading stays reusable for %rodin_balance --cached "
                                "and a new panel.").tag(config=True)
    cache_ttl = Float(None, allow_none=True,
                      help="Deprecated name of cached_max_age.").tag(config=True)
    balance_scale = Float(float(BalanceSettings.scale),
                          help="check_balance units per credit: 1 (credits, documented) or 10 "
                               "(tenths: a 0.5-credit generation drops it by 5).").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        self._refused: list[ConfigRefused] = []
        super().__init__(shell=shell, **kwargs)
        if self.cache_ttl is not None:  # from an old ipython_config.py
            self.cached_max_age = self.cache_ttl
        self._push_settings()
        self._configure_client()
        events = getattr(shell, "events", None)
        if events is not None:
            events.register("pre_run_cell", self._forget_refusals)
            events.register("post_run_cell", self._fail_refused_config)
            logging.getLogger().addFilter(_not_ours)

    def unload(self) -> None:
        """``%unload_ext``: remove the hooks and the log filter (the extension calls it)."""
        events: Any = getattr(self.shell, "events", None)
        for event, callback in (("pre_run_cell", self._forget_refusals),
                                ("post_run_cell", self._fail_refused_config)):
            with contextlib.suppress(ValueError, KeyError, AttributeError):
                events.unregister(event, callback)
        logging.getLogger().removeFilter(_not_ours)

    def _refuse(self, message: str) -> ConfigRefused:
        error = ConfigRefused(message)
        self._refused.append(error)
        return error

    def _forget_refusals(self, info: Any = None) -> None:
        self._refused.clear()

    def _fail_refused_config(self, result: Any = None) -> None:
        """A ``%config`` value was refused during the cell: fail it with one line."""
        refused, self._refused = self._refused, []
        if not refused or result is None:
            return
        if result.error_in_exec is None and result.error_before_exec is None:
            stopped = CellStopped(str(refused[-1]))
            result.error_in_exec = stopped
            # the kernel's error reply then carries the one line (``_render_traceback_``)
            shell: Any = self.shell
            shell.showtraceback((CellStopped, stopped, None))

    # -- settings: the traits only forward to rodin_jupyter.balance.settings -----------

    @validate("balance_scale")
    def _positive_scale(self, proposal: Any) -> float:
        try:
            return float(check_balance_scale(proposal["value"]))
        except ValueError as exc:
            raise self._refuse(f"RodinMagics.{exc}") from None

    @validate("connect_timeout", "deadline")
    def _positive_seconds(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not value > 0:
            raise self._refuse(
                f"RodinMagics.{proposal['trait'].name} must be more than 0 seconds.")
        return value

    @validate("read_timeout")
    def _read_timeout_limit(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not value > 0:
            raise self._refuse("RodinMagics.read_timeout must be more than 0 seconds.")
        if value > READ_TIMEOUT_LIMIT:
            raise self._refuse(f"RodinMagics.read_timeout must be at most "
                               f"{READ_TIMEOUT_LIMIT:g} seconds, not {value:g}.")
        return value

    @validate("refresh_interval")
    def _refresh_limit(self, proposal: Any) -> float:
        value = float(proposal["value"])
        if not value >= MIN_REFRESH_INTERVAL:
            raise self._refuse(f"RodinMagics.refresh_interval must be at least "
                               f"{MIN_REFRESH_INTERVAL:g} seconds, not {value:g}.")
        return value

    @observe("cache_ttl")
    def _old_cache_name(self, change: Any) -> None:
        if change["new"] is not None:
            warnings.warn("RodinMagics.cache_ttl is now RodinMagics.cached_max_age.",
                          DeprecationWarning, stacklevel=2)
            self.cached_max_age = change["new"]

    @observe("warn_below", "min_balance", "refresh_interval", "cached_max_age")
    def _settings_changed(self, change: Any) -> None:
        self._push_settings()

    @observe("base_url", "connect_timeout", "read_timeout", "deadline", "balance_scale")
    def _client_changed(self, change: Any) -> None:
        self._configure_client()

    def _push_settings(self) -> None:
        section = settings.balance
        section.warn_below = Decimal(str(self.warn_below))
        section.too_low_below = None if self.min_balance is None else Decimal(
            str(self.min_balance))
        section.refresh_interval = float(self.refresh_interval)  # validated: >= the minimum
        section.cached_max_age = max(0.0, float(self.cached_max_age))

    def _configure_client(self) -> None:
        settings.balance.scale = Decimal(str(self.balance_scale))  # a new unit: fresh readings
        section = settings.client  # the send-time guard watches this base too
        section.base_url = self.base_url
        section.connect_timeout = float(self.connect_timeout)
        section.read_timeout = float(self.read_timeout)
        section.deadline = float(self.deadline)
        apply_client_settings()

    # -- %rodin_balance ----------------------------------------------------------------

    @magic_arguments()
    @argument("--cached", action="store_true",
              help="Reuse the last reading if it is younger than RodinMagics.cached_max_age.")
    @argument("--require", metavar="N", default=None,
              help="Stop the cell (and Run All) if the balance is below N credits.")
    @argument("--json", action="store_true", help="Print machine-readable JSON.")
    @argument("--panel", action="store_true",
              help="Show the refreshable balance panel (ipywidgets).")
    @argument("--sidecar", action="store_true",
              help="Show the panel in JupyterLab's side area (needs the sidecar extra).")
    @argument("--ledger", action="store_true",
              help="Show each billable request the guard let out (with --json: as JSON).")
    @line_magic
    def rodin_balance(self, line: str = "") -> Any:
        """Show your Hyper3D Rodin credit balance.

        The key comes from RODIN_API_KEY (or HYPER3D_API_KEY), the address from
        RODIN_API_BASE. The value returned is a Decimal: ``b = %rodin_balance``.
        """
        try:
            args = parse_argstring(self.rodin_balance, line)
        except Exception as exc:  # argparse's UsageError: one line is enough
            raise CellStopped(str(exc).splitlines()[-1]) from None
        monitor = get_monitor()
        if args.ledger:
            view = LedgerView(get_ledger())
            if args.json:
                sys.stdout.write(view.json_text() + "\n")
                return None
            return view
        if args.panel or args.sidecar:
            from rodin_jupyter.widgets.side import show_panel

            show_panel(sidecar=args.sidecar)
            return None
        required = parse_credits(args.require, "--require") if args.require else None
        previous = monitor.last
        try:
            reading = monitor.read(max_age=settings.balance.cached_max_age if args.cached else None)
        except RodinError as exc:
            raise CellStopped(str(exc)) from None
        balance = Balance(reading.balance, reading.checked_at,
                          cached=reading is previous or reading is monitor.adopted,
                          ledger=monitor.snapshot().ledger)
        if required is not None and balance < required:
            raise CellStopped(
                f"Balance is {balance.value} credits, below the required {required}: "
                "cell stopped."
            )
        if args.json:
            sys.stdout.write(json.dumps(balance.to_json()) + "\n")
            return None
        return balance
