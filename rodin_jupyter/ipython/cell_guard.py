"""The guard's notebook side: the cell number for the ledger, and shell escapes.

The send-time hooks (:mod:`rodin_jupyter.guard.sendtime`) see every billable request the
kernel's Python sends. A shell command (``!curl -X POST .../rodin``) is another process they
cannot see, so a cell whose shell line certainly posts to a generation endpoint is refused
before it runs. Nothing else about a cell's text is ever judged.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import sys
from typing import Any

from rodin_jupyter.balance.ledger import get_ledger
from rodin_jupyter.compat import running_cell_number
from rodin_jupyter.guard.decision import GuardBlocked
from rodin_jupyter.guard.pricing import GENERATION_ENDPOINTS
from rodin_jupyter.guard.sendtime import get_guard

_SHELL_MAGIC = re.compile(r"^\s*(?:!|%sx\b|%system\b|%%(?:bash|sh|script|system)\b)")
_PREFIX = re.compile(r"^\s*(?:!+|%sx\b|%system\b)\s*")
_HTTP_TOOLS = frozenset({"curl", "wget", "http", "https", "xh"})
_WRAPPERS = frozenset({"sudo", "command", "env", "time", "nohup", "exec"})
_SEPARATORS = frozenset({";", "|", "||", "&", "&&", "(", ")", ";;", "|&"})
_ENDPOINT = re.compile(rf"/(?:{'|'.join(map(re.escape, GENERATION_ENDPOINTS))})/?(?:$|[?#])")
_POST_FLAGS = frozenset({"-F", "--form", "-d", "--data", "--data-raw", "--data-binary",
                         "--data-urlencode", "--data-ascii", "--post-data", "--post-file",
                         "--json", "--form-string"})
SHELL_REFUSAL = ("guard: a shell command in this cell posts to a Rodin generation endpoint, "
                 "which the guard cannot check (another process): cell not run; send it "
                 "from Python (requests) so it is priced, or `%rodin_guard off`")


def _commands(line: str) -> list[list[str]]:
    """Simple commands of a shell line, quotes respected; [] when shlex cannot tell."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    try:
        tokens = list(lexer)
    except ValueError:  # an unclosed quote: uncertain, so not judged
        return []
    commands: list[list[str]] = [[]]
    for token in tokens:
        if token in _SEPARATORS:
            commands.append([])
        else:
            commands[-1].append(token)
    return [c for c in commands if c]


def _posts(words: list[str]) -> bool:
    """An HTTP tool in command position, a generation URL and a POST flag among its words."""
    while words and (words[0] in _WRAPPERS or re.fullmatch(r"\w+=.*", words[0])):
        words = words[1:]
    if not words or words[0].rsplit("/", 1)[-1] not in _HTTP_TOOLS:
        return False
    args = words[1:]
    if not any(_ENDPOINT.search(w) for w in args):
        return False
    for index, word in enumerate(args):
        flag = word.split("=", 1)[0]
        if flag in _POST_FLAGS or (word in ("-XPOST", "POST") and words[0] != "wget"):
            return True
        if flag in ("-X", "--request") and "=" in word and word.split("=", 1)[1] == "POST":
            return True
        if word in ("-X", "--request") and index + 1 < len(args) and args[index + 1] == "POST":
            return True
    return False


def posts_from_shell(lines: list[str]) -> bool:
    """True only for a shell command that certainly runs an HTTP tool posting to a
    generation path (tokenised as the shell would; anything uncertain is not judged)."""
    whole_cell = bool(lines) and re.match(r"^\s*%%(?:bash|sh|script|system)\b", lines[0])
    if lines and not whole_cell and lines[0].lstrip().startswith("%%"):
        return False  # another cell magic's body (%%writefile, %%html): not run by a shell
    body = lines[1:] if whole_cell else lines
    text = "".join(body).replace("\\\n", " ")
    for line in text.splitlines():
        if not (whole_cell or _SHELL_MAGIC.match(line)):
            continue
        command = line if whole_cell else _PREFIX.sub("", line, count=1)
        if any(_posts(words) for words in _commands(command)):
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
        text = "".join(lines)
        if not any(endpoint in text for endpoint in GENERATION_ENDPOINTS):
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
        return running_cell_number(self.shell)

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
