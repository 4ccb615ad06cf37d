"""The guard's notebook side: the cell number for the ledger, and shell escapes.

The send-time hooks (:mod:`rodin_jupyter.guard.sendtime`) see every billable request the
kernel's Python sends. A shell command (``!curl -X POST .../rodin``) is another process they
cannot see, so a cell whose shell line certainly posts to a generation endpoint is refused
before it runs. Nothing else about a cell's text is ever judged.
"""

from __future__ import annotations

import contextlib
import re
import sys
from typing import Any

from rodin_jupyter.balance.ledger import get_ledger
from rodin_jupyter.guard.decision import GuardBlocked
from rodin_jupyter.guard.sendtime import get_guard

_SHELL_MAGIC = re.compile(r"^\s*(?:!|%sx\b|%system\b|%%(?:bash|sh|script|system)\b)")
_HTTP_TOOL = re.compile(r"(?:^|[;&|(`]\s*)(?:sudo\s+|command\s+)?(?:curl|wget|https?|xh)(?=\s)")
_PREFIX = re.compile(r"^\s*(?:!+|%sx\b|%system\b)\s*")
_ENDPOINT = re.compile(r"/(?:rodin|rodin_texture_only|bang)(?=$|[\s'\"?)}])")
_POSTING = re.compile(r"(?:-X\s*['\"]?POST\b|--request[=\s]+['\"]?POST\b|(?:^|\s)(?:-F|--form|-d|"
                      r"--data(?:-\w+)?|--post-data|--post-file|--json)(?=\s|=|$)|"
                      r"\bhttps?\s+POST\b|\bhttp\s+-f\b)")
SHELL_REFUSAL = ("guard: a shell command in this cell posts to a Rodin generation endpoint, "
                 "which the guard cannot check (another process): cell not run; send it "
                 "from Python (requests) so it is priced, or `%rodin_guard off`")


def posts_from_shell(lines: list[str]) -> bool:
    """True only for a shell line that runs an HTTP tool posting to a generation path."""
    whole_cell = bool(lines) and re.match(r"^\s*%%(?:bash|sh|script|system)\b", lines[0])
    if lines and not whole_cell and lines[0].lstrip().startswith("%%"):
        return False  # another cell magic's body (%%writefile, %%html): not run by a shell
    for line in lines:
        if not (whole_cell or _SHELL_MAGIC.match(line)):
            continue
        command = _PREFIX.sub("", line, count=1)
        if _HTTP_TOOL.search(command) and _ENDPOINT.search(command) and _POSTING.search(command):
            return True
    return False


def refuse_shell() -> None:
    """What a refused shell cell runs instead of itself."""
    raise GuardBlocked(SHELL_REFUSAL)


REFUSAL_CODE = ["__import__('rodin_jupyter.ipython.cell_guard', fromlist=['x'])"
                ".refuse_shell()\n"]


class ShellCheck:
    """``input_transformers_cleanup`` entry: swaps a certain shell POST for a refusal."""

    def __call__(self, lines: list[str]) -> list[str]:
        if "rodin" not in "".join(lines) and "bang" not in "".join(lines):
            return lines
        return list(REFUSAL_CODE) if posts_from_shell(lines) else lines


class NotebookSide:
    """Adds and removes the shell check and the ledger's cell number, for one shell."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.check = ShellCheck()
        self._refusals = 0
        self._armed = False  # pre_run_cell ran for the cell now ending

    def _cell(self) -> int | None:
        """The running cell's In[] number. IPython 9 increments ``execution_count`` before
        a cell runs, 7.x after; both store the input first, so the history knows."""
        # compat: IPython 7.34 and 8/9 differ in when execution_count moves
        history = getattr(getattr(self.shell, "history_manager", None), "input_hist_raw", None)
        if isinstance(history, list) and history:
            return len(history) - 1
        count = getattr(self.shell, "execution_count", None)
        return count if isinstance(count, int) else None

    def attach(self) -> None:
        """At load: the ledger learns cell numbers; a cell with a refusal fails."""
        get_ledger().set_cell_source(self._cell)
        self.shell.events.register("pre_run_cell", self._pre)
        self.shell.events.register("post_run_cell", self._post)

    def detach(self) -> None:
        get_ledger().set_cell_source(None)
        for event, callback in (("pre_run_cell", self._pre), ("post_run_cell", self._post)):
            with contextlib.suppress(ValueError, KeyError):
                self.shell.events.unregister(event, callback)

    def _pre(self, info: Any = None) -> None:
        self._refusals = get_guard().refusals
        self._armed = True

    def _post(self, result: Any = None) -> None:
        """A request was refused during the cell but its code carried on (``%run`` shows
        the error and returns; ``except Exception`` swallows it): fail the cell anyway,
        so "Run All" stops, and show the line if nobody did."""
        guard = get_guard()
        refusal = guard.last_refusal
        armed, self._armed = self._armed, False
        if not armed or guard.refusals == self._refusals or refusal is None or result is None:
            return
        if result.error_in_exec is None and result.error_before_exec is None:
            result.error_in_exec = refusal
            if not refusal.shown:
                sys.stderr.write(refusal.line() + "\n")

    def install(self) -> None:
        cleanup = self.shell.input_transformers_cleanup
        if self.check not in cleanup:
            cleanup.append(self.check)

    def uninstall(self) -> None:
        cleanup = self.shell.input_transformers_cleanup
        while self.check in cleanup:
            cleanup.remove(self.check)


__all__ = ["SHELL_REFUSAL", "NotebookSide", "ShellCheck", "posts_from_shell", "refuse_shell"]
