"""Reading a cell's code for generation calls and what they will cost.

Pure analysis of an ``ast.Module`` (and, when a name leads there, of objects in the user's
namespace): which calls reach ``/rodin``, ``/rodin_texture_only`` or ``/bang``, how often,
and with which literal ``tier`` / ``addons`` / ``texture_mode``. No IPython hooks and no
HTTP: :mod:`rodin_jupyter.ipython.cell_guard` decides what to do with the answer.
"""

from __future__ import annotations

import ast
import getopt
import inspect
import logging
import re
import textwrap
import timeit
import types
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from rodin_jupyter.errors import PricingError
from rodin_jupyter.guard.pricing import (
    GENERATION_ENDPOINTS,
    parse_addons,
)

log = logging.getLogger("rodin_jupyter.ipython.cell_guard")

KEYS = ("tier", "addons", "texture_mode")
"""Request fields that change a generation's price."""

_ENDPOINT_RE = re.compile(r"/(rodin_texture_only|rodin|bang)(?![A-Za-z0-9_-])")
_GATE_RE = re.compile(r"[/'\"](?:rodin_texture_only|rodin|bang)(?![A-Za-z0-9_-])", re.IGNORECASE)

RECOVERY_MAGICS = frozenset({
    "rodin_guard", "rodin_balance", "config", "load_ext", "unload_ext", "reload_ext",
    "pinfo", "pinfo2", "pdoc", "pdef", "psource", "pfile", "who", "whos", "who_ls",
    "xmode", "lsmagic", "magic", "history", "hist", "quickref",
})
"""Magics that are never blocked, so the way out always works."""

CODE_MAGICS = frozenset({"time", "timeit", "prun", "capture", "debug"})
"""Magics whose argument (or body) is Python code that runs in this cell."""

TEXT_MAGICS = frozenset({"writefile", "file", "markdown", "latex", "svg"})
"""Cell magics whose body is only text (written or shown): naming an endpoint costs nothing."""

BROWSER_MAGICS = frozenset({"html", "javascript", "js"})
"""Cell magics run by the browser: free unless the body could send a request."""

_BROWSER_HTTP_RE = re.compile(r"fetch|XMLHttpRequest|ajax|axios|sendBeacon|<form|WebSocket",
                              re.IGNORECASE)

NO_HTTP_CALLS = frozenset({
    "print", "open", "Path", "PurePath", "PurePosixPath", "PosixPath", "WindowsPath", "mkdir",
    "makedirs", "exists", "is_file", "is_dir", "write", "write_text", "write_bytes",
    "read_text", "read_bytes", "touch", "unlink", "glob", "rglob", "isfile", "isdir",
    "display", "Markdown", "HTML", "Latex", "len", "isinstance", "startswith", "endswith",
    "split", "rsplit", "partition", "rpartition", "find", "rfind", "search", "match",
    "fullmatch", "findall", "sub", "debug", "info", "warning", "warn", "error", "exception",
})
"""Calls that never send a request: an endpoint among their arguments is only text.

A learned or configured generation function of the same name still counts.
"""

_BUDGET = 2000  # max objects/nodes looked at when following a name into the namespace
_MAX_TEXT = 4096  # longer strings in the namespace are not URLs; do not regex them



# -- what a cell contains --------------------------------------------------------------


@dataclass
class Found:
    """Literal price-relevant values seen around a generation call."""

    tiers: set[str] = field(default_factory=set)
    addons: set[str] = field(default_factory=set)
    texture_modes: set[str] = field(default_factory=set)
    unknown: bool = False
    errors: list[str] = field(default_factory=list)

    def update(self, other: Found) -> None:
        """Merge: the estimate takes the most expensive combination (fail closed)."""
        self.tiers |= other.tiers
        self.addons |= other.addons
        self.texture_modes |= other.texture_modes
        self.unknown = self.unknown or other.unknown
        self.errors.extend(e for e in other.errors if e not in self.errors)


@dataclass
class FunctionInfo:
    """A function known to spend credits: configured by the user or learned from a cell."""

    endpoints: frozenset[str]
    found: Found
    params: tuple[str, ...] = ()  # positional parameter names, in order
    key_params: dict[str, set[str]] = field(default_factory=dict)  # param -> price keys it sets


@dataclass
class Site:
    """One generation call in a cell; ``count`` is None when it repeats without bound."""

    endpoints: frozenset[str]
    found: Found
    count: int | None
    line: int
    name: str


@dataclass
class Analysis:
    """What :class:`CellAnalyzer` saw: the generation sites and what it learned."""

    sites: list[Site] = field(default_factory=list)
    learned_functions: dict[str, FunctionInfo] = field(default_factory=dict)
    learned_urls: dict[str, frozenset[str]] = field(default_factory=dict)
    forgotten: set[str] = field(default_factory=set)


@dataclass
class _Binding:
    expr: ast.AST
    element: bool  # the name takes each element of ``expr`` (a for-loop target)
    top: bool  # bound outside any function body
    rebinds: bool = False  # ``name = ...``: the old value is gone (not ``name += ...``)


def endpoints_in_text(text: str | bytes) -> set[str]:
    """Generation endpoints a string literal refers to (``/rodin``, ``.../bang``, ``"rodin"``)."""
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    found = set(_ENDPOINT_RE.findall(text))
    bare = text.strip().strip("/")
    if bare in GENERATION_ENDPOINTS:
        found.add(bare)
    return found


def _dotted(node: ast.AST) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _root_names(target: ast.AST) -> Iterator[str]:
    """Names an assignment target (re)binds or mutates: ``x``, ``x[...]``, ``x.a``, ``(x, y)``."""
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _root_names(elt)
    elif isinstance(target, (ast.Starred, ast.Attribute, ast.Subscript)):
        yield from _root_names(target.value)


def magic_call(node: ast.Call) -> tuple[str, str, str | None] | None:
    """``(name, line, cell)`` for IPython's rewriting of ``%name line`` / ``%%name``."""
    func = node.func
    if not (isinstance(func, ast.Attribute)
            and func.attr in ("run_line_magic", "run_cell_magic")
            and isinstance(func.value, ast.Call)
            and isinstance(func.value.func, ast.Name) and func.value.func.id == "get_ipython"):
        return None
    values = [a.value for a in node.args
              if isinstance(a, ast.Constant) and isinstance(a.value, str)]
    if len(values) != len(node.args):
        return None
    if func.attr == "run_line_magic" and len(values) >= 2:
        return values[0], values[1], None
    if func.attr == "run_cell_magic" and len(values) >= 3:
        return values[0], values[1], values[2]
    return None


def _timeit_runs(line: str) -> int | None:
    """How often ``%timeit -n N [-r R]`` runs its code: N * R; None when it picks N itself."""
    try:
        opts, _ = getopt.getopt(line.split(), "n:r:tcp:qov:")
        values = dict(opts)
        number = int(values.get("-n", "0"))
        repeat = int(values.get("-r", str(max(getattr(timeit, "default_repeat", 5), 7))))
    except (getopt.GetoptError, ValueError):
        return None
    return number * repeat if number > 0 and repeat > 0 else None


def is_recovery_cell(module: ast.AST) -> bool:
    """Only recovery magics (``%rodin_guard off``, ``%config``, help...): never blocked."""
    if not isinstance(module, ast.Module) or not module.body:
        return False
    for stmt in module.body:
        value = stmt.value if isinstance(stmt, (ast.Expr, ast.Assign)) else None
        if not isinstance(value, ast.Call):
            return False
        magic = magic_call(value)
        if magic is None or magic[0] not in RECOVERY_MAGICS:
            return False
    return True


_BUILDERS = frozenset({
    "format", "format_map", "join", "urljoin", "str", "replace", "strip", "rstrip", "lstrip",
    "removesuffix", "removeprefix", "lower", "upper", "encode", "decode", "quote", "dict",
    "list", "tuple", "Path", "PurePosixPath", "joinpath", "with_name",
})
"""Calls that build a string or container from their arguments: a URL passes through."""


def is_builder(call: ast.Call) -> bool:
    """``"{}/rodin".format(base)``, ``urljoin(base, "rodin")``... but not ``requests.post``."""
    dotted = _dotted(call.func)
    if dotted is None:
        func = call.func
        return isinstance(func, ast.Attribute) and func.attr in _BUILDERS
    return dotted.rsplit(".", 1)[-1] in _BUILDERS


_NON_MUTATING = frozenset({"items", "keys", "values", "get", "copy", "count", "index"})
_LEN_WRAPPERS = frozenset({"list", "tuple", "sorted", "reversed", "enumerate", "set"})


class CellAnalyzer:
    """Finds generation calls in a cell and the literal tier/addons/texture_mode around them.

    Generation calls: calls whose URL argument is built from strings naming ``/rodin``,
    ``/rodin_texture_only`` or ``/bang`` (also through a variable set in this cell or
    learned from an earlier one), and calls to generation functions (configured, or learned
    because their body makes such a call). Values are looked up in the statement around the
    call, in variables it uses (this cell's assignments first, then the user namespace), and
    in a learned function's body and defaults. Loops over a literal ``range``/sequence (or a
    sized namespace value) multiply the count; other repeats count once per call site.
    """

    def __init__(
        self,
        functions: Collection[str] = (),
        learned_functions: Mapping[str, FunctionInfo] | None = None,
        learned_urls: Mapping[str, frozenset[str]] | None = None,
        namespace: Mapping[str, Any] | None = None,
        magic_transform: Callable[[str], str] | None = None,
        learn: bool = True,
    ) -> None:
        self.configured = {f.strip() for f in functions if f and f.strip()}
        self.functions: dict[str, FunctionInfo] = dict(learned_functions or {})
        self.learned_urls = dict(learned_urls or {})
        self.namespace = namespace if namespace is not None else {}
        self.magic_transform = magic_transform
        self.learn = learn
        self._bindings: dict[str, list[_Binding]] = {}
        self._cell_urls: dict[str, frozenset[str]] = {}
        self._ns_cache: dict[str, frozenset[str]] = {}
        self._defs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda] = {}
        self._calls: list[ast.Call] = []
        self._rebound_at: dict[str, int] = {}  # name -> first line that plainly rebinds it
        self._fn_params: set[str] = set()  # while reading a def: its parameter names
        self._key_params: dict[str, set[str]] = {}
        self._result = Analysis()

    # -- entry point ---------------------------------------------------------------------

    def analyze(self, module: ast.Module) -> Analysis:
        """Sites and learned names for ``module`` (which is not modified)."""
        self._calls = [n for n in ast.walk(module) if isinstance(n, ast.Call)]
        for stmt in module.body:  # unconditional top-level ``name = ...``
            targets = (stmt.targets if isinstance(stmt, ast.Assign)
                       else [stmt.target] if isinstance(stmt, ast.AnnAssign) and stmt.value
                       else [])
            for target in targets:
                if isinstance(target, ast.Name):
                    end = getattr(stmt, "end_lineno", None) or stmt.lineno
                    self._rebound_at.setdefault(target.id, end)
        self._collect_bindings(module)
        self._resolve_cell_urls()
        self._learn_functions(module)
        self._walk_stmts(module.body, 1)
        if self.learn:
            for name, bindings in self._bindings.items():
                top = [b for b in bindings if b.top]
                if not top:
                    continue
                if name in self._cell_urls:
                    self._result.learned_urls[name] = self._cell_urls[name]
                elif name in self.learned_urls and any(b.rebinds for b in top):
                    self._result.forgotten.add(name)
        return self._result

    # -- bindings and URL variables --------------------------------------------------------

    def _collect_bindings(self, module: ast.Module) -> None:
        def bind(target: ast.AST, expr: ast.AST, element: bool, top: bool,
                 plain: bool = False) -> None:
            for name in _root_names(target):
                self._bindings.setdefault(name, []).append(
                    _Binding(expr, element, top, plain and isinstance(target, ast.Name)))

        def visit(node: ast.AST, top: bool) -> None:
            for child in ast.iter_child_nodes(node):
                inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda))
                if isinstance(child, ast.Assign):
                    for target in child.targets:
                        bind(target, child.value, False, top, plain=True)
                        if isinstance(child.value, ast.Lambda) and isinstance(target, ast.Name):
                            self._defs[target.id] = child.value
                elif isinstance(child, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr)):
                    if child.value is not None:
                        bind(child.target, child.value, False, top,
                             plain=not isinstance(child, ast.AugAssign))
                elif isinstance(child, (ast.For, ast.AsyncFor, ast.comprehension)):
                    bind(child.target, child.iter, True, top)
                elif isinstance(child, ast.withitem) and child.optional_vars is not None:
                    bind(child.optional_vars, child.context_expr, False, top)
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    self._defs[child.name] = child
                visit(child, inner)

        visit(module, True)

    def _resolve_cell_urls(self) -> None:
        for _ in range(10):  # a fixpoint: url = base + "/rodin"; u2 = url
            changed = False
            for name, bindings in self._bindings.items():
                endpoints: set[str] = set()
                for binding in bindings:
                    endpoints |= self.mentions(binding.expr)
                if endpoints and self._cell_urls.get(name) != frozenset(endpoints):
                    self._cell_urls[name] = frozenset(endpoints)
                    changed = True
            if not changed:
                return

    def _name_endpoints(self, name: str, line: int = 0) -> frozenset[str]:
        found = self._cell_urls.get(name, frozenset())
        rebound = self._rebound_at.get(name)
        if rebound is None or line <= rebound:  # not yet replaced by this cell's value
            found |= self.learned_urls.get(name, frozenset())
        if name not in self._bindings and name in self.namespace:
            if name not in self._ns_cache:
                self._ns_cache[name] = frozenset(self._object_endpoints(self.namespace[name]))
            found |= self._ns_cache[name]
        return found

    def _object_endpoints(self, obj: Any) -> set[str]:
        """Endpoints named by strings inside a namespace value (bounded, no side effects)."""
        found: set[str] = set()
        stack: list[Any] = [obj]
        budget = _BUDGET
        while stack and budget > 0:
            budget -= 1
            item = stack.pop()
            if isinstance(item, (str, bytes)):
                if len(item) <= _MAX_TEXT:
                    found |= endpoints_in_text(item)
            elif type(item) in (list, tuple, set, frozenset):
                stack.extend(list(item)[:_BUDGET])
            elif type(item) is dict:
                stack.extend(list(item.values())[:_BUDGET])
        return found

    def mentions(self, node: ast.AST, mode: str = "value") -> set[str]:
        """Endpoints named in ``node``'s string literals or by the variables it reads.

        ``mode`` "value": what an expression evaluates to -- string building (``+``,
        f-strings, ``.format``, ``urljoin``...) passes a URL on, any other call (such as
        ``requests.post``) does not, so a response is never taken for a URL. "call": the
        same for the arguments of the call ``node``. "all": anything inside (a function body).
        """
        found: set[str] = set()
        stack: list[ast.AST] = [node]
        while stack:
            item = stack.pop()
            if isinstance(item, ast.Constant):
                if isinstance(item.value, (str, bytes)):
                    found |= endpoints_in_text(item.value)
                continue
            if (isinstance(item, ast.Expr) and isinstance(item.value, ast.Constant)
                    and isinstance(item.value.value, str)):
                continue  # a docstring or bare string statement does nothing
            if isinstance(item, ast.Name):
                if isinstance(item.ctx, ast.Load):
                    found |= self._name_endpoints(item.id, getattr(item, "lineno", 0))
                continue
            if (mode != "all" and isinstance(item, ast.Call) and not is_builder(item)
                    and not (mode == "call" and item is node)):
                continue
            stack.extend(ast.iter_child_nodes(item))
        return found

    # -- generation functions ------------------------------------------------------------

    def _endpoints_within(self, node: ast.AST) -> set[str]:
        """Endpoints a function or lambda body reaches: in its strings or via known helpers."""
        endpoints = self.mentions(node, "all")
        for call in ast.walk(node):
            if isinstance(call, ast.Call):
                info = self._function_info(call.func)
                if info is not None:
                    endpoints |= info.endpoints
        return endpoints

    def _function_info(self, func: ast.AST) -> FunctionInfo | None:
        """The generation function a call's ``func`` refers to, if any."""
        dotted = _dotted(func)
        if dotted is None:  # ``C().go``: a learned method by its name
            if isinstance(func, ast.Attribute) and func.attr in self.functions:
                return self.functions[func.attr]
            return None
        last = dotted.rsplit(".", 1)[-1]
        if last in self.functions:
            return self.functions[last]
        for name in self.configured:
            if name == last or (("." in name) and (dotted == name or dotted.endswith("." + name))):
                return FunctionInfo(frozenset({"rodin"}), Found())
        return None

    def _learn_functions(self, module: ast.Module) -> None:
        if not self._defs:
            return
        pending = dict(self._defs)
        for _ in range(len(pending) + 1):
            progress = False
            for name, node in list(pending.items()):
                endpoints = self._endpoints_within(node)
                if endpoints:
                    info = self._function_from_def(node, frozenset(endpoints))
                    self.functions[name] = info
                    self._result.learned_functions[name] = info
                    del pending[name]
                    progress = True
            if not progress:
                break
        for name in pending:  # redefined without any generation call: forget it
            if name in self.functions and name not in self.configured:
                del self.functions[name]
                self._result.forgotten.add(name)

    def _function_from_def(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda,
                           endpoints: frozenset[str]) -> FunctionInfo:
        """Price values in a generation function's body; parameters are read at each call."""
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        names = {a.arg for a in [*positional, *args.kwonlyargs]}
        found = Found()
        self._fn_params, self._key_params = names, {}
        try:
            self._scan(node, found, set(names))
        finally:
            key_params, self._fn_params, self._key_params = self._key_params, set(), {}
        for key in KEYS:  # ``tier=`` at a call sets the parameter named tier
            if key in names:
                key_params.setdefault(key, set()).add(key)
        defaults = list(zip(positional[len(positional) - len(args.defaults):], args.defaults,
                            strict=True))
        defaults += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                     if d is not None]
        for arg, default in defaults:
            for key in key_params.get(arg.arg, ()):
                self._record(key, default, found)
        if args.vararg is not None or args.kwarg is not None:
            for extra in (args.vararg, args.kwarg):
                if extra is not None and extra.arg in key_params:
                    found.unknown = True
        return FunctionInfo(endpoints, found, tuple(a.arg for a in positional), key_params)

    def _call_values(self, call: ast.Call, info: FunctionInfo, found: Found) -> None:
        """Arguments that set a price parameter of a generation function (by position too)."""
        if not info.key_params:
            return
        params = list(info.params)
        if (params and params[0] in ("self", "cls") and isinstance(call.func, ast.Attribute)):
            params = params[1:]
        for index, arg in enumerate(call.args):
            if isinstance(arg, ast.Starred):  # *args: cannot tell which parameters it sets
                if any(p in info.key_params for p in params[index:]):
                    found.unknown = True
                break
            if index < len(params):
                for key in info.key_params.get(params[index], ()):
                    self._record(key, arg, found)
        for kw in call.keywords:
            if kw.arg is not None and kw.arg not in KEYS:
                for key in info.key_params.get(kw.arg, ()):
                    self._record(key, kw.value, found)

    # -- walking the code that runs --------------------------------------------------------

    def _walk_stmts(self, stmts: Iterable[ast.stmt], mult: int | None) -> None:
        for stmt in stmts:
            self._walk_stmt(stmt, mult)

    def _walk_stmt(self, stmt: ast.stmt, mult: int | None) -> None:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            # The body runs when called (calls to it are sites); decorators/defaults run now.
            for expr in [*stmt.decorator_list, *stmt.args.defaults,
                         *[d for d in stmt.args.kw_defaults if d is not None]]:
                self._walk_expr(expr, mult, stmt)
            return
        if (isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Lambda)
                and all(isinstance(t, ast.Name) for t in stmt.targets)):
            return  # ``name = lambda ...`` defines a function, like ``def``
        if isinstance(stmt, (ast.For, ast.AsyncFor)):
            self._walk_expr(stmt.iter, mult, stmt)
            times = self.static_len(stmt.iter)
            inner = mult if (mult is None or times is None) else mult * times
            self._walk_stmts(stmt.body, inner)
            self._walk_stmts(stmt.orelse, mult)
            return
        for child in ast.iter_child_nodes(stmt):
            self._walk_node(child, mult, stmt)

    def _walk_node(self, node: ast.AST, mult: int | None, ctx: ast.stmt) -> None:
        if isinstance(node, ast.stmt):
            self._walk_stmt(node, mult)
        elif isinstance(node, ast.expr):
            self._walk_expr(node, mult, ctx)
        else:  # withitem, excepthandler, match_case, keyword, arguments...
            for child in ast.iter_child_nodes(node):
                self._walk_node(child, mult, ctx)

    def _walk_expr(self, node: ast.AST, mult: int | None, ctx: ast.stmt) -> None:
        if isinstance(node, ast.Call):
            self._visit_call(node, mult, ctx)
            return
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            inner = mult
            for gen in node.generators:
                self._walk_expr(gen.iter, inner, ctx)
                times = self.static_len(gen.iter)
                inner = inner if (inner is None or times is None) else inner * times
                for cond in gen.ifs:
                    self._walk_expr(cond, inner, ctx)
            parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
            for part in parts:
                self._walk_expr(part, inner, ctx)
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            info = self._function_info(node)
            if info is not None:  # passed along, e.g. map(submit, prompts)
                self._add_site(info.endpoints, info, mult, ctx, node, node.id)
            return
        if isinstance(node, ast.Lambda):  # e.g. map(lambda p: requests.post(...), prompts)
            endpoints = self._endpoints_within(node)
            if endpoints:
                self._add_site(frozenset(endpoints), None, mult, ctx, node, "lambda")
            return
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self._walk_expr(child, mult, ctx)
            else:
                self._walk_node(child, mult, ctx)

    def _visit_call(self, node: ast.Call, mult: int | None, ctx: ast.stmt) -> None:
        magic = magic_call(node)
        if magic is not None:
            self._visit_magic(*magic, node=node, mult=mult, ctx=ctx)
            return
        info = self._function_info(node.func)
        endpoints = (self.mentions(node, "call")
                     if not is_builder(node) and not self._no_http(node) else set())
        name = _dotted(node.func) or "call"
        if info is not None:
            self._add_site(info.endpoints | endpoints, info, mult, ctx, node, name)
        elif endpoints:
            self._add_site(frozenset(endpoints), None, mult, ctx, node, name)
        if info is None or not isinstance(node.func, ast.Name):
            target = node.func.value if isinstance(node.func, ast.Attribute) and info else node.func
            self._walk_expr(target, mult, ctx)
        for arg in node.args:
            self._walk_expr(arg, mult, ctx)
        for kw in node.keywords:
            self._walk_expr(kw.value, mult, ctx)

    @staticmethod
    def _no_http(call: ast.Call) -> bool:
        """``print(url)``, ``open(path)``, ``Path(...).mkdir()``...: never a request."""
        func = call.func
        if isinstance(func, ast.Name):
            return func.id in NO_HTTP_CALLS
        # ``opener.open(url, data)`` (urllib's OpenerDirector) does send: only builtin open
        return isinstance(func, ast.Attribute) and func.attr in NO_HTTP_CALLS - {"open"}

    def _visit_magic(self, name: str, line: str, cell: str | None, *, node: ast.Call,
                     mult: int | None, ctx: ast.stmt) -> None:
        if name in RECOVERY_MAGICS:
            return
        if cell is not None and (name in TEXT_MAGICS or (
                name in BROWSER_MAGICS and not _BROWSER_HTTP_RE.search(cell))):
            return  # text written to a file or shown: nothing is sent
        if name in CODE_MAGICS:
            module = self._parse_magic_code(cell if cell is not None else line,
                                            strip_options=cell is None)
            if module is not None:
                child = CellAnalyzer(self.configured, self.functions, self.learned_urls,
                                     self.namespace, self.magic_transform, self.learn)
                result = child.analyze(module)
                runs = _timeit_runs(line) if name == "timeit" else 1
                for site in result.sites:
                    count = (None if runs is None or mult is None or site.count is None
                             else site.count * mult * runs)
                    self._result.sites.append(Site(site.endpoints, site.found, count,
                                                   node.lineno, f"%{name} {site.name}"))
                self._result.learned_functions.update(result.learned_functions)
                self._result.learned_urls.update(result.learned_urls)
                self._result.forgotten |= result.forgotten
                return
        endpoints = endpoints_in_text(line) | endpoints_in_text(cell or "")
        if endpoints:  # e.g. %%bash with curl: cannot read the values, count each call site
            found = Found(unknown=True)
            count = None if name == "timeit" else mult
            self._result.sites.append(Site(frozenset(endpoints), found, count, node.lineno,
                                           f"%{name}"))

    def _parse_magic_code(self, code: str, strip_options: bool) -> ast.Module | None:
        if self.magic_transform is not None:
            try:
                code = self.magic_transform(code)
            except Exception:
                return None
        for skip in range(8 if strip_options else 1):
            match = re.match(r"\s*(?:\S+\s+){" + str(skip) + "}", code) if skip else None
            text = code[match.end():] if match else code
            if skip and not match:
                break
            try:
                return ast.parse(text)
            except (SyntaxError, ValueError):
                continue
        return None

    def _add_site(self, endpoints: frozenset[str], info: FunctionInfo | None, mult: int | None,
                  ctx: ast.stmt, node: ast.AST, name: str) -> None:
        found = Found()
        self._scan(ctx, found, set())
        if info is not None:
            found.update(info.found)
            if isinstance(node, ast.Call):
                self._call_values(node, info, found)
        self._result.sites.append(Site(endpoints or frozenset({"rodin"}), found, mult,
                                       getattr(node, "lineno", 0), name))

    # -- loop counts ---------------------------------------------------------------------

    def static_len(self, node: ast.AST) -> int | None:
        """How many times a loop over ``node`` runs, when that is plain; else None."""
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            if any(isinstance(e, ast.Starred) for e in node.elts):
                return None
            return len(node.elts)
        if isinstance(node, ast.Dict):
            return None if any(k is None for k in node.keys) else len(node.keys)
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
            return len(node.value)
        if isinstance(node, ast.Call):
            func = _dotted(node.func)
            if func == "range" and 1 <= len(node.args) <= 3 and not node.keywords:
                ints = [self._static_int(a) for a in node.args]
                if all(i is not None for i in ints):
                    try:
                        return len(range(*[i for i in ints if i is not None]))
                    except (ValueError, OverflowError):
                        return None
                return None
            if func in _LEN_WRAPPERS and len(node.args) == 1:
                return self.static_len(node.args[0])
            if func == "zip" and node.args:
                lengths = [n for n in (self.static_len(a) for a in node.args) if n is not None]
                return min(lengths) if lengths else None
            if (isinstance(node.func, ast.Attribute) and node.func.attr in ("items", "keys",
                                                                            "values")
                    and not node.args):
                return self.static_len(node.func.value)
            return None
        if isinstance(node, ast.Name):
            if self._mutated(node.id):
                return None
            bindings = self._bindings.get(node.id)
            if bindings:
                if len(bindings) == 1 and not bindings[0].element:
                    return self.static_len(bindings[0].expr)
                return None
            value = self.namespace.get(node.id)
            if isinstance(value, (list, tuple, dict, set, frozenset, range, str)):
                return len(value)
        return None

    def _static_int(self, node: ast.AST) -> int | None:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = self._static_int(node.operand)
            return None if inner is None else -inner
        if isinstance(node, ast.Name) and node.id not in self._bindings:
            value = self.namespace.get(node.id)
            return value if type(value) is int else None
        return None

    def _mutated(self, name: str) -> bool:
        """Whether the cell may change ``name``'s length (``name.append(...)`` and the like)."""
        for call in self._calls:
            func = call.func
            if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                    and func.value.id == name and func.attr not in _NON_MUTATING):
                return True
        return False

    # -- literal values --------------------------------------------------------------------

    def _scan(self, node: ast.AST, found: Found, seen: set[str]) -> None:
        """Record every tier/addons/texture_mode value reachable from ``node``."""
        stack: list[ast.AST] = [node]
        budget = _BUDGET * 10
        while stack and budget > 0:
            budget -= 1
            item = stack.pop()
            if isinstance(item, ast.keyword) and item.arg in KEYS:
                self._record(item.arg, item.value, found)
            elif isinstance(item, ast.Dict):
                for key, value in zip(item.keys, item.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value in KEYS:
                        self._record(str(key.value), value, found)
            elif isinstance(item, (ast.Tuple, ast.List)) and len(item.elts) >= 2:
                first = item.elts[0]
                if isinstance(first, ast.Constant) and first.value in KEYS:
                    self._record(str(first.value), item.elts[1], found)
            elif isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                if item is not node:  # a def's own defaults: see _function_from_def
                    self._record_defaults(item.args, found)
            elif isinstance(item, ast.Name) and isinstance(item.ctx, ast.Load):
                if item.id in seen:
                    continue
                seen.add(item.id)
                if item.id in self._bindings:
                    stack.extend(b.expr for b in self._bindings[item.id])
                elif item.id in self.namespace:
                    self._scan_object(self.namespace[item.id], found)
                continue
            stack.extend(ast.iter_child_nodes(item))

    def _record_defaults(self, args: ast.arguments, found: Found) -> None:
        positional = [*args.posonlyargs, *args.args]
        pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults,
                         strict=True))
        pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                  if d is not None]
        for arg, default in pairs:
            if arg.arg in KEYS:
                self._record(arg.arg, default, found)

    def _scan_object(self, obj: Any, found: Found) -> None:
        stack: list[Any] = [obj]
        budget = _BUDGET
        while stack and budget > 0:
            budget -= 1
            item = stack.pop()
            if type(item) is dict:
                for key, value in list(item.items())[:_BUDGET]:
                    if key in KEYS:
                        self._record_values(key, self._object_values(key, value, False, 0), found)
                    stack.append(value)
            elif type(item) in (list, tuple):
                if len(item) >= 2 and isinstance(item[0], str) and item[0] in KEYS:
                    self._record_values(item[0], self._object_values(item[0], item[1], False, 0),
                                        found)
                stack.extend(list(item)[:_BUDGET])

    def _record(self, key: str, value: ast.AST, found: Found) -> None:
        self._record_values(key, self._values(key, value, False, 0, set()), found)

    def _record_values(self, key: str, values: list[str] | None, found: Found) -> None:
        if values is None:
            found.unknown = True
            return
        for value in values:
            if key == "tier":
                if value.strip():
                    found.tiers.add(value.strip())
            elif key == "texture_mode":
                if value.strip():
                    found.texture_modes.add(value.strip())
            else:
                try:
                    found.addons.update(parse_addons(value))
                except PricingError as exc:
                    if str(exc) not in found.errors:
                        found.errors.append(str(exc))

    def _values(self, key: str, node: ast.AST, element: bool, depth: int,
                seen: set[str]) -> list[str] | None:
        """The strings a field may take from this expression; None when it cannot tell."""
        if depth > 8:
            return None
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                return [node.value]
            if isinstance(node.value, bytes):
                return [node.value.decode("utf-8", "replace")]
            return [] if node.value is None else None
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            elts = node.elts
            if any(isinstance(e, ast.Starred) for e in elts):
                return None
            if element or (key == "addons" and not self._is_multipart(elts)):
                return self._union(self._values(key, e, False, depth + 1, seen) for e in elts)
            if self._is_multipart(elts):  # requests' files=: (filename, value[, type])
                return self._values(key, elts[1], False, depth + 1, seen)
            return self._values(key, elts[0], False, depth + 1, seen) if len(elts) == 1 else None
        if isinstance(node, ast.IfExp):
            return self._union([self._values(key, node.body, element, depth + 1, seen),
                                self._values(key, node.orelse, element, depth + 1, seen)])
        if isinstance(node, ast.Call) and node.args and not node.keywords:
            func = _dotted(node.func) or ""
            if func.rsplit(".", 1)[-1] in ("dumps", "str") and len(node.args) == 1:
                return self._values(key, node.args[0], element, depth + 1, seen)
            return None
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id in self._fn_params:  # set by the caller: read at each call site
                self._key_params.setdefault(node.id, set()).add(key)
                return []
            if node.id in seen:
                return None
            seen = seen | {node.id}
            if node.id in self._bindings:
                return self._union(
                    self._values(key, b.expr, b.element or element, depth + 1, seen)
                    for b in self._bindings[node.id])
            if node.id in self.namespace:
                return self._object_values(key, self.namespace[node.id], element, depth)
            return None
        return None

    @staticmethod
    def _is_multipart(elts: list[ast.expr]) -> bool:
        first = elts[0] if elts else None
        return (2 <= len(elts) <= 4 and isinstance(first, ast.Constant)
                and (first.value is None or (isinstance(first.value, str)
                                             and "." in first.value)))

    def _object_values(self, key: str, obj: Any, element: bool, depth: int) -> list[str] | None:
        if depth > 8:
            return None
        if isinstance(obj, str):
            return [obj]
        if isinstance(obj, bytes):
            return [obj.decode("utf-8", "replace")]
        if obj is None:
            return []
        if type(obj) in (list, tuple, set, frozenset):
            items = list(obj)[:_BUDGET]
            multipart = (type(obj) is tuple and 2 <= len(items) <= 4
                         and (items[0] is None or (isinstance(items[0], str) and "." in items[0])))
            if multipart and not element:
                return self._object_values(key, items[1], False, depth + 1)
            if element or key == "addons":
                return self._union(self._object_values(key, i, False, depth + 1) for i in items)
            return None
        return None

    @staticmethod
    def _union(parts: Iterable[list[str] | None]) -> list[str] | None:
        out: list[str] = []
        for part in parts:
            if part is None:
                return None
            out.extend(p for p in part if p not in out)
        return out


# -- what is already defined when the guard is turned on -----------------------------------

_NS_NAMES = 5000  # at most this many namespace names are looked at
_NS_CONTAINER = 1000  # larger containers are data, not endpoint tables


def _code_strings(code: types.CodeType, skip_doc: bool, depth: int = 0) -> Iterator[str]:
    """String constants of a code object and the functions/classes nested in it."""
    consts = code.co_consts
    for index, const in enumerate(consts):
        if isinstance(const, str):
            if not (skip_doc and index == 0):
                yield const
        elif isinstance(const, bytes):
            yield const.decode("latin-1")
        elif isinstance(const, types.CodeType) and depth < 6:
            yield from _code_strings(const, False, depth + 1)
        elif isinstance(const, tuple):
            yield from (c for c in const if isinstance(c, str))


def _code_names(code: types.CodeType, depth: int = 0) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType) and depth < 6:
            names |= _code_names(const, depth + 1)
    return names


_Def = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda


def _def_node(func: types.FunctionType) -> _Def | None:
    """The def (or lambda) of ``func`` from its source, when the source can be found."""
    try:
        source = textwrap.dedent(inspect.getsource(func))
        module = ast.parse(source)
    except Exception:  # no source (C, exec'd code), or a lambda inside an expression
        return None
    for node in ast.walk(module):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                node.name == func.__name__):
            return node
        if isinstance(node, ast.Lambda) and func.__name__ == "<lambda>":
            return node
    return None


def learn_namespace(namespace: Mapping[str, Any], hidden: Collection[str] = (),
                    functions: Collection[str] = ()) -> Analysis:
    """URL variables and generation functions already defined in ``namespace``.

    So that a helper defined before ``%rodin_guard on`` is guarded like one defined after:
    strings and small containers naming an endpoint become learned URLs; functions (and
    methods of classes) whose code names an endpoint, a learned URL or another generation
    function become learned functions. Modules and ``_private`` names are skipped; the work
    is bounded by :data:`_NS_NAMES`, :data:`_BUDGET` and :data:`_NS_CONTAINER`.
    """
    result = Analysis()
    analyzer = CellAnalyzer(functions, namespace=namespace, learn=False)
    funcs: dict[str, tuple[types.FunctionType, dict[str, frozenset[str]]]] = {}
    hidden_names = set(hidden)
    for count, (name, value) in enumerate(list(namespace.items())):
        if count >= _NS_NAMES:
            break
        if name.startswith("_") or name in hidden_names or isinstance(value, types.ModuleType):
            continue
        if type(value) in (str, bytes, list, tuple, set, frozenset, dict):
            if isinstance(value, (str, bytes)) or len(value) <= _NS_CONTAINER:
                endpoints = analyzer._object_endpoints(value)
                if endpoints:
                    result.learned_urls[name] = frozenset(endpoints)
        elif isinstance(value, types.FunctionType):
            funcs[name] = (value, {})
        elif isinstance(value, type) and getattr(value, "__module__", None) == "__main__":
            attrs: dict[str, frozenset[str]] = {}
            methods: list[tuple[str, types.FunctionType]] = []
            for attr, member in list(vars(value).items())[:_BUDGET]:
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, types.FunctionType):
                    methods.append((attr, member))
                elif type(member) in (str, bytes, list, tuple, dict):
                    found = analyzer._object_endpoints(member)
                    if found:
                        attrs[attr] = frozenset(found)
            for attr, method in methods:
                if not attr.startswith("__"):
                    funcs.setdefault(attr, (method, attrs))
    learned: dict[str, frozenset[str]] = {}
    for _ in range(6):  # helpers calling helpers: a small fixpoint
        changed = False
        for name, (func, attrs) in funcs.items():
            if name in learned:
                continue
            code = func.__code__
            reached: set[str] = set()
            for text in _code_strings(code, skip_doc=func.__doc__ is not None):
                if len(text) <= _MAX_TEXT:
                    reached |= endpoints_in_text(text)
            for ref in _code_names(code):
                reached |= result.learned_urls.get(ref, frozenset())
                reached |= learned.get(ref, frozenset()) | attrs.get(ref, frozenset())
            for extra in (func.__defaults__ or (), *(func.__kwdefaults__ or {}).values(),
                          *(c.cell_contents for c in (func.__closure__ or ())
                            if _cell_is_set(c))):
                if type(extra) in (str, bytes, list, tuple, dict):
                    reached |= analyzer._object_endpoints(extra)
            if reached:
                learned[name] = frozenset(reached)
                changed = True
        if not changed:
            break
    for name, reaches in learned.items():
        func = funcs[name][0]
        node = _def_node(func)
        if node is not None:
            info = analyzer._function_from_def(node, reaches)
        else:  # no source: its price values cannot be read, so assume the dearest
            code = func.__code__
            params = code.co_varnames[:code.co_argcount + code.co_posonlyargcount]
            info = FunctionInfo(reaches, Found(unknown=True), tuple(params))
        result.learned_functions[name] = info
    return result


def _cell_is_set(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True
