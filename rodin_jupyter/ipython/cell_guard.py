"""The automatic guard: stop a generation cell *before* it runs when the balance is short.

How it stays cheap and safe:

* A string-level gate (an ``input_transformers_post`` hook) looks at every cell's text.
  Only when the text mentions ``rodin`` / ``bang`` or a generation function's name does it
  put :class:`AutoGuard` into ``shell.ast_transformers``; otherwise it takes it out. While
  *any* AST transformer is registered IPython re-walks every cell's tree
  (``ast.fix_missing_locations``), which costs ordinary cells ~1.2x; the gate costs a regex
  search. Ordinary cells therefore run at full speed and never cause a request.
* :meth:`AutoGuard.visit` analyses the tree (:class:`CellAnalyzer`), estimates the cost,
  reads the balance through the shared monitor and raises :class:`GuardBlocked` (an
  ``InputRejected``) to stop the cell. It never raises anything else: any other exception
  would make IPython drop the transformer and run the cell.
* A cell is checked once per top-level execution: transforms that happen *while a cell is
  executing* (``%time``, ``%%time``, ``%timeit``, a nested ``run_cell``) are recognised from
  the call stack and skipped when that execution was already checked.

No HTTP here: balances are read only via :func:`rodin_jupyter.balance.monitor.get_monitor`.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import re
import sys
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from types import FrameType
from typing import Any

from IPython.core.error import InputRejected

from rodin_jupyter.balance.monitor import LedgerEntry, format_credits, get_monitor
from rodin_jupyter.balance.settings import settings
from rodin_jupyter.errors import PricingError, RodinError
from rodin_jupyter.guard.cell_analysis import (
    _GATE_RE,
    CellAnalyzer,
    FunctionInfo,
    Site,
    is_recovery_cell,
    learn_namespace,
)
from rodin_jupyter.guard.pricing import (
    PriceTable,
    estimate_cost,
    load_prices,
)
from rodin_jupyter.http.client import BalanceReading
from rodin_jupyter.ipython.cell_errors import OneLineError

log = logging.getLogger("rodin_jupyter.ipython.cell_guard")

class GuardBlocked(OneLineError, InputRejected):
    """The guard stopped a cell: shown as one line, and "Run All" stops here."""



# -- estimating ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """What a cell's generation calls will cost, and how many there are."""

    total: Decimal
    calls: int
    sites: tuple[Site, ...]
    unclear: bool = False  # some price value could not be read: the minimum is the floor

    def describe(self) -> str:
        """'3 generation calls' -- short, for the one-line message."""
        text = f"{self.calls} generation call{'s' if self.calls != 1 else ''}"
        if self.unclear:
            text += "; tier/addons not readable, counted at the --min floor"
        return text


class UnboundedCount(PricingError):
    """A generation call repeats an unknown number of times (``%timeit``)."""


def site_cost(site: Site, prices: PriceTable, minimum: Decimal) -> Decimal:
    """One call's cost: the most expensive combination of the values seen, at least ``minimum``."""
    if site.found.errors:
        raise PricingError(site.found.errors[0].rstrip("."))
    costs: list[Decimal] = []
    for endpoint in sorted(site.endpoints):
        if endpoint == "rodin":
            tiers: list[str | None] = [*sorted(site.found.tiers)] or [None]
            modes: list[str | None] = [*sorted(site.found.texture_modes)] or [None]
            addons = sorted(site.found.addons)
            for tier in tiers:
                for mode in modes:
                    costs.append(estimate_cost(tier, addons, mode, "rodin", 1, prices))
        else:
            costs.append(estimate_cost(endpoint=endpoint, prices=prices))
    return max([*costs, minimum])


def estimate_sites(sites: Iterable[Site], prices: PriceTable, minimum: Decimal) -> Estimate:
    """Total of all sites; raises PricingError (unknown tier...) or UnboundedCount."""
    total = Decimal(0)
    calls = 0
    kept = tuple(sites)
    for site in kept:
        if site.count is None:
            raise UnboundedCount(f"{site.name} would repeat a paid generation an unknown "
                                 "number of times")
        total += site_cost(site, prices, minimum) * site.count
        calls += site.count
    unclear = any(s.found.unknown and "rodin" in s.endpoints and s.count for s in kept)
    return Estimate(total, calls, kept, unclear)


# -- configuration and the balance check --------------------------------------------------


@dataclass
class GuardConfig:
    """The guard's settings; ``%config RodinGuard`` writes them (see guard_magics)."""

    functions: tuple[str, ...] = ()
    prices: dict[str, Any] = field(default_factory=dict)
    on_error: str = "block"
    reserve: Decimal = Decimal(0)
    minimum: Decimal | None = None
    cache_ttl: float = 0.0
    learn: bool = True

    def min_cost(self) -> Decimal:
        """Assumed cost of a call whose price the cell does not show (>= this per call)."""
        return self.minimum if self.minimum is not None else settings.min_balance


def needs_message(cost: Decimal, reserve: Decimal, balance: Decimal, detail: str = "") -> str:
    """'needs 2.5 credits + 1 reserve, balance is 1: cell not run (2 generation calls)'."""
    text = f"needs {format_credits(cost)} credit{'' if cost == 1 else 's'}"
    if reserve:
        text += f" + {format_credits(reserve)} reserve"
    text += f", balance is {format_credits(balance)}: cell not run"
    return text + (f" ({detail})" if detail else "")


def read_balance_for(cost: Decimal, reserve: Decimal, on_error: str, cache_ttl: float,
                     detail: str = "") -> BalanceReading | None:
    """The balance if it covers ``cost + reserve``; else GuardBlocked.

    None means "could not tell, allowed by on_error=allow" (a warning went to stderr).
    A fresh read is the default: credits may be spent elsewhere (another notebook, the web
    app) and a stale number could let through a cell that cannot be paid for.
    """
    try:
        monitor = get_monitor()
        reading = monitor.read(max_age=cache_ttl) if cache_ttl > 0 else monitor.refresh()
    except RodinError as exc:
        reason = str(exc).rstrip(".")
        if on_error == "allow":
            sys.stderr.write(f"rodin_jupyter: guard could not read the balance ({reason}); "
                             "running the cell anyway (on_error=allow).\n")
            return None
        raise GuardBlocked(f"guard could not read the balance ({reason}): cell not run; "
                           "`%rodin_guard on --on-error allow` runs such cells anyway") from None
    if reading.balance < cost + reserve:
        raise GuardBlocked("guard: " + needs_message(cost, reserve, reading.balance, detail))
    return reading


# -- the transformer -----------------------------------------------------------------------


def _ipython_code_objects() -> tuple[Any, Any]:
    from IPython.core.interactiveshell import InteractiveShell

    return InteractiveShell.run_cell_async.__code__, InteractiveShell.run_code.__code__


@dataclass
class _Pending:
    """An allowed generation cell waiting for its "after" balance (post_execute)."""

    label: str
    estimated: Decimal
    before: Decimal
    at: datetime
    owner: Any = None  # weakref to the outermost ExecutionResult, when known


class AutoGuard(ast.NodeTransformer):
    """``%rodin_guard on``: the gate, the AST check and the ledger callback, for one shell."""

    def __init__(self, shell: Any, config: GuardConfig | None = None) -> None:
        super().__init__()
        self.shell = shell
        self.config = config or GuardConfig()
        self.active = False
        self.learned_functions: dict[str, FunctionInfo] = {}
        self.learned_urls: dict[str, frozenset[str]] = {}
        self.last_decision = "no generation cell checked yet"
        self.checks = 0
        self._suspended = 0
        self._cleared: weakref.ReferenceType[Any] | None = None
        self._pending: _Pending | None = None
        self._gate_fn: Callable[[list[str]], list[str]] = self._gate
        self._post_fn: Callable[[], None] = self._post_execute
        self._gate_re: re.Pattern[str] | None = None
        self._gate_key: tuple[str, ...] | None = None
        self._codes = _ipython_code_objects()

    def __repr__(self) -> str:
        return f"<rodin_jupyter AutoGuard {'on' if self.active else 'off'}>"

    # -- install / uninstall: each step has its exact undo ----------------------------------

    def install(self) -> None:
        """Add the gate and the ledger callback (the transformer is added by the gate)."""
        if self.active:
            return
        if self._gate_fn not in self.shell.input_transformers_post:
            self.shell.input_transformers_post.append(self._gate_fn)
        self.shell.events.register("post_execute", self._post_fn)
        self.active = True
        self.learn_defined()

    def learn_defined(self) -> None:
        """Learn URL variables and helpers defined before the guard was turned on."""
        if not self.config.learn:
            return
        try:
            namespace = getattr(self.shell, "user_ns", None)
            if not isinstance(namespace, dict):
                return
            hidden = getattr(self.shell, "user_ns_hidden", None) or {}
            found = learn_namespace(namespace, hidden, self.config.functions)
        except Exception as exc:  # never break ``%rodin_guard on``
            log.debug("guard could not read the namespace: %s", type(exc).__name__)
            return
        for name, endpoints in found.learned_urls.items():
            self.learned_urls.setdefault(name, endpoints)
        for name, info in found.learned_functions.items():
            self.learned_functions.setdefault(name, info)

    def uninstall(self) -> None:
        """Remove the gate, the transformer and the callback; forget pending state."""
        posts = self.shell.input_transformers_post
        while self._gate_fn in posts:
            posts.remove(self._gate_fn)
        self._unregister_transformer()
        with contextlib.suppress(ValueError, KeyError):
            self.shell.events.unregister("post_execute", self._post_fn)
        self.active = False
        self._pending = None
        self._cleared = None

    def _unregister_transformer(self) -> None:
        transformers = self.shell.ast_transformers
        for item in [t for t in transformers if t is self]:
            transformers.remove(item)

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """No automatic check inside (``%%rodin_guard`` already checked its body)."""
        self._suspended += 1
        try:
            yield
        finally:
            self._suspended -= 1

    # -- the gate: a string test on every cell -----------------------------------------------

    def gate_pattern(self) -> re.Pattern[str] | None:
        """Names (configured or learned) that make a cell worth a look, as one regex."""
        names = sorted({*(f.strip().rsplit(".", 1)[-1] for f in self.config.functions
                          if f.strip()),
                        *self.learned_functions, *self.learned_urls})
        key = tuple(names)
        if key != self._gate_key:
            self._gate_re = (re.compile(r"\b(?:" + "|".join(re.escape(n) for n in names)
                                        + r")\b") if names else None)
            self._gate_key = key
        return self._gate_re

    def wants(self, text: str) -> bool:
        """The gate's test: could this cell text make a generation call? (A few us.)

        An endpoint right after a slash or a quote (``f"{BASE}/rodin"``, ``"bang"``), or a
        configured / learned name. Comments, ``import rodin_jupyter`` and ``%rodin_balance``
        do not pass, so they skip the AST check.
        """
        if _GATE_RE.search(text):
            return True
        pattern = self.gate_pattern()
        return pattern is not None and pattern.search(text) is not None

    def _gate(self, lines: list[str]) -> list[str]:
        try:
            if self.wants("".join(lines)):
                if not any(t is self for t in self.shell.ast_transformers):
                    self.shell.ast_transformers.insert(0, self)
            elif any(t is self for t in self.shell.ast_transformers):
                self._unregister_transformer()
        except Exception as exc:  # never break transform_cell; fail towards checking
            log.debug("guard gate failed: %s", type(exc).__name__)
            with contextlib.suppress(Exception):
                if not any(t is self for t in self.shell.ast_transformers):
                    self.shell.ast_transformers.insert(0, self)
        return lines

    # -- the AST check ---------------------------------------------------------------------

    def visit(self, node: ast.AST) -> Any:
        """Check a cell; raises only GuardBlocked (IPython drops a transformer otherwise)."""
        try:
            self._check(node)
        except GuardBlocked:
            raise
        except Exception as exc:
            recovery = False
            with contextlib.suppress(Exception):
                recovery = is_recovery_cell(node)
            if recovery or self.config.on_error == "allow":
                with contextlib.suppress(Exception):
                    sys.stderr.write(f"rodin_jupyter: the guard failed ({type(exc).__name__}); "
                                     "running the cell unchecked.\n")
                return node
            raise GuardBlocked(f"the guard failed internally ({type(exc).__name__}): cell not "
                               "run; `%rodin_guard off` turns the guard off") from None
        return node

    def _execution(self) -> tuple[bool, Any]:
        """(inside a running cell?, the outermost cell's ExecutionResult or None)."""
        run_cell_async, run_code = self._codes
        nested = False
        outer: FrameType | None = None
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if frame.f_code is run_code:
                nested = True
            elif frame.f_code is run_cell_async:
                outer = frame
            frame = frame.f_back
        result = outer.f_locals.get("result") if outer is not None else None
        return nested, result

    def _check(self, node: ast.AST) -> None:
        if not self.active or self._suspended or not isinstance(node, ast.Module):
            return
        if is_recovery_cell(node):
            return
        nested, result = self._execution()
        cleared = self._cleared() if self._cleared is not None else None
        if nested and result is not None and cleared is result:
            return  # %time / %%time / %timeit body of a cell already checked
        analyzer = CellAnalyzer(
            self.config.functions, self.learned_functions, self.learned_urls,
            namespace=getattr(self.shell, "user_ns", None),
            magic_transform=self.shell.input_transformer_manager.transform_cell,
            learn=self.config.learn,
        )
        analysis = analyzer.analyze(node)
        if self.config.learn:
            self.learned_functions.update(analysis.learned_functions)
            self.learned_urls.update(analysis.learned_urls)
            for name in analysis.forgotten:
                self.learned_functions.pop(name, None)
                self.learned_urls.pop(name, None)
        if not analysis.sites:
            return
        self.checks += 1
        try:
            estimate = estimate_sites(analysis.sites, load_prices(self.config.prices),
                                      self.config.min_cost())
        except PricingError as exc:
            self.last_decision = f"blocked: {exc}"
            raise GuardBlocked(f"guard: {str(exc).rstrip('.')}: cell not run") from None
        reserve = self.config.reserve
        label = (f"{self._label(result)}: {estimate.calls} "
                 f"generation{'s' if estimate.calls != 1 else ''}")
        try:
            reading = (read_balance_for(estimate.total, reserve, self.config.on_error,
                                        self.config.cache_ttl, estimate.describe())
                       if estimate.total + reserve > 0 else None)
        except GuardBlocked as exc:
            self.last_decision = f"blocked {label}: {exc}"
            raise
        self.last_decision = (f"allowed {label}: needs {format_credits(estimate.total)}"
                              f" ({estimate.describe()})")
        if not nested and result is not None:
            with contextlib.suppress(TypeError):
                self._cleared = weakref.ref(result)
        if reading is not None:
            self._add_pending(label, estimate.total, reading, result)

    @staticmethod
    def _label(result: Any) -> str:
        count = getattr(result, "execution_count", None)
        info = getattr(result, "info", None)
        if getattr(info, "silent", False):
            return "silent cell"
        return f"In [{count}]" if isinstance(count, int) else "cell"

    def _add_pending(self, label: str, estimated: Decimal, reading: BalanceReading,
                     result: Any) -> None:
        old = self._pending
        if old is not None:
            owner = old.owner() if old.owner is not None else None
            if owner is not None and owner is result:  # a nested check in the same cell
                old.estimated += estimated
                return
            # post_execute never came for the previous cell: this reading is its "after"
            get_monitor().add_ledger_entry(LedgerEntry(old.label, old.estimated, old.before,
                                                       reading.balance, old.at))
        ref = None
        with contextlib.suppress(TypeError):
            ref = weakref.ref(result) if result is not None else None
        self._pending = _Pending(label, estimated, reading.balance, datetime.now(timezone.utc),
                                 ref)

    # -- the ledger: the "after" balance once the cell finished ----------------------------

    def _in_cell(self) -> bool:
        run_cell_async, _ = self._codes
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if frame.f_code is run_cell_async:
                return True
            frame = frame.f_back
        return False

    def _post_execute(self) -> None:
        """Every execution (silent ones too) ends here; errors never reach the user's cell."""
        try:
            if self._in_cell():
                return  # a nested run_cell ended; the outer cell is still running
            self._cleared = None
            pending, self._pending = self._pending, None
            if pending is None:
                return
            after: Decimal | None
            try:
                after = get_monitor().refresh().balance
            except Exception:
                after = None
            get_monitor().add_ledger_entry(LedgerEntry(pending.label, pending.estimated,
                                                       pending.before, after, pending.at))
        except Exception as exc:
            log.debug("guard ledger update failed: %s", type(exc).__name__)

    # -- status ------------------------------------------------------------------------------

    def status(self) -> str:
        """A few lines for ``%rodin_guard``."""
        cfg = self.config
        lines = [
            f"Rodin guard: {'on' if self.active else 'off'} (on error: {cfg.on_error}; "
            f"at least {format_credits(cfg.min_cost())} credits per generation call; "
            f"reserve {format_credits(cfg.reserve)}; balance read "
            f"{'fresh' if cfg.cache_ttl <= 0 else f'cached up to {cfg.cache_ttl:g} s'}).",
        ]
        if cfg.functions:
            lines.append("Generation functions (configured): " + ", ".join(cfg.functions))
        if self.learned_functions:
            lines.append("Generation functions (learned): "
                         + ", ".join(sorted(self.learned_functions)))
        if self.learned_urls:
            lines.append("Generation URL variables (learned): "
                         + ", ".join(sorted(self.learned_urls)))
        lines.append(f"Last check: {self.last_decision}.")
        return "\n".join(lines)


__all__ = [
    "AutoGuard",
    "Estimate",
    "GuardBlocked",
    "GuardConfig",
    "estimate_sites",
    "needs_message",
    "read_balance_for",
    "site_cost",
]
