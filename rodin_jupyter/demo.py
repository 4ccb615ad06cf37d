"""``rodin-jupyter demo``: a real kernel runs the quickstart notebook against a sandbox.

No key and no network: the sandbox's own key and address are handed to the kernel
through its environment, as a user would with ``RODIN_API_KEY`` / ``RODIN_API_BASE``.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from rodin_jupyter.balance.display import format_credits
from rodin_jupyter.errors import RodinError
from rodin_jupyter.sandbox import Sandbox

NOTEBOOK_NAME = "quickstart.ipynb"
SHUTDOWN_SECONDS = 10.0
_BALANCE_LINE = re.compile(r"Rodin balance: ([0-9.]+) credits")


def find_notebook(name: str = NOTEBOOK_NAME) -> Path:
    """The notebook in a source checkout (``notebooks/``) or in the installed wheel.

    The wheel ships ``notebooks/`` as the package data ``rodin_jupyter/notebooks``.
    """
    here = Path(__file__).resolve().parent
    packaged = Path(str(importlib.resources.files("rodin_jupyter") / "notebooks" / name))
    for candidate in (packaged, here.parent / "notebooks" / name):
        if candidate.is_file():
            return candidate
    raise RodinError(f"Could not find {name}; reinstall rodin-jupyter (its wheel ships it).")


SHIPPED = ("quickstart", "guarded_batch", "generate", "balance_panel")


def resolve_notebook(notebook: str | os.PathLike[str] | None) -> Path:
    """A path as given if it exists, else one of the shipped notebooks by name
    (``generate``, ``guarded_batch.ipynb``, ``notebooks/generate.ipynb``): those work from an
    installed wheel too."""
    if not notebook:
        return find_notebook()
    path = Path(notebook)
    if path.exists() or path.suffix not in ("", ".ipynb") or len(path.parts) > 2:
        return path
    if len(path.parts) == 2 and path.parts[0] != "notebooks":
        return path
    try:
        return find_notebook(path.stem + ".ipynb")
    except RodinError:
        raise RodinError(f"No notebook {notebook}: give a path, or a shipped one by name "
                         f"({', '.join(SHIPPED)}).") from None


@dataclass
class DemoSummary:
    """What the demo saw and did, for a short printed report."""

    notebook: Path
    output: Path
    start_balance: Decimal
    end_balance: Decimal
    balances_seen: list[Decimal] = field(default_factory=list)
    generations: int = 0
    credits_charged: Decimal = Decimal(0)
    cells_run: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The notebook ran to the end and saw the sandbox's balance."""
        return self.error is None and bool(self.balances_seen)

    def lines(self) -> list[str]:
        """The report, a few lines."""
        seen = ", ".join(format_credits(b) for b in self.balances_seen) or "none"
        lines = [
            f"Ran {self.notebook.name} in a real kernel against a local sandbox "
            f"({self.cells_run} code cells).",
            f"Balance the notebook saw: {seen} credits.",
            f"Generations submitted: {self.generations}, credits charged: "
            f"{format_credits(self.credits_charged)} "
            f"(sandbox {format_credits(self.start_balance)} -> "
            f"{format_credits(self.end_balance)}).",
            f"Executed notebook saved to {self.output}.",
        ]
        if self.error:
            lines.append(f"Demo failed: {self.error}")
        return lines


@contextmanager
def _environment(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in saved.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def local_kernel_manager(sockets_dir: str) -> Any:
    """A kernel on IPC sockets: nothing listens on TCP, nobody else can talk to it."""
    from jupyter_client.manager import KernelManager

    return KernelManager(kernel_name="python3", transport="ipc",
                         ip=str(Path(sockets_dir) / "kernel"))


def _clean_up(client: Any, km: Any, handlers: dict[Any, Any]) -> None:
    """Stop the kernel now, whatever state the start left it in, and undo what nbclient set up.

    A kernel that failed to start leaves nbclient's exit hook registered (it then waits
    forever at interpreter exit) and its SIGINT/SIGTERM handlers installed (so SIGTERM does
    nothing): both are undone here, and the kernel process is killed if it is still there.
    """
    atexit.unregister(client._cleanup_kernel)
    for sig, handler in handlers.items():
        with contextlib.suppress(ValueError, TypeError, OSError):
            signal.signal(sig, handler)
    if km.has_kernel:  # a kernel manager we pass in is ours to stop
        stopper = threading.Thread(target=km.shutdown_kernel, kwargs={"now": True}, daemon=True)
        stopper.start()
        stopper.join(SHUTDOWN_SECONDS)
        if stopper.is_alive():
            with contextlib.suppress(Exception):
                km.provisioner.process.kill()  # compat: jupyter_client >= 7 provisioners
    with contextlib.suppress(Exception):
        km.cleanup_resources()


def _balances_in(nb: Any) -> list[Decimal]:
    found: list[Decimal] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/plain", "") or output.get("text", "")
            found += [Decimal(m) for m in _BALANCE_LINE.findall(str(text))]
    return found


def run_demo(notebook: str | os.PathLike[str] | None = None,
             output: str | os.PathLike[str] | None = None,
             balance: Decimal | int | str = 10, timeout: int = 120) -> DemoSummary:
    """Start a sandbox, execute the notebook headless in a kernel, save the executed copy."""
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError:
        raise RodinError(
            "The demo needs the 'demo' extra: pip install 'rodin-jupyter[demo]'."
        ) from None

    source = resolve_notebook(notebook)
    target = Path(output) if output else Path.cwd() / f"{source.stem}.executed.ipynb"
    try:
        nb = nbformat.read(source, as_version=4)
    except Exception as exc:  # missing file, not JSON, not a notebook (jsonschema errors)
        raise RodinError(f"Could not read the notebook {source}: {type(exc).__name__}.") from None
    with Sandbox(balance=balance) as sb, \
            tempfile.TemporaryDirectory(prefix="rodin-demo-") as scratch, \
            _environment(RODIN_API_BASE=sb.base_url, RODIN_API_KEY=sb.api_key,
                         RODIN_MODELS_DIR=str(Path(scratch) / "models")):
        summary = DemoSummary(source, target, sb.balance, sb.balance)
        km = local_kernel_manager(scratch)
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", km=km,
                                resources={"metadata": {"path": str(source.parent)}})
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            client.execute()
        except CellExecutionError as exc:
            summary.error = f"{exc.ename}: {exc.evalue}"[:300]
        except OSError as exc:  # e.g. HOME=/proc: the kernel cannot make its directories
            raise RodinError(
                f"The demo could not start its kernel ({exc.strerror or type(exc).__name__}); "
                "check that HOME is a writable directory.") from None
        finally:
            _clean_up(client, km, handlers)
        summary.end_balance = sb.balance
        summary.generations = sum(1 for c in sb.charges)
        summary.credits_charged = sum((c.credits for c in sb.charges), Decimal(0))
    summary.balances_seen = _balances_in(nb)
    summary.cells_run = sum(1 for c in nb.cells
                            if c.cell_type == "code" and c.get("execution_count"))
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, target)
    return summary
