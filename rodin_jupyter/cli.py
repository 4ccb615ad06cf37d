"""``rodin-jupyter``: the balance from a shell, a local sandbox, and the no-key demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from decimal import Decimal

from rodin_jupyter.balance.display import format_credits
from rodin_jupyter.errors import RodinError
from rodin_jupyter.sandbox.args import credits_arg, port_arg, scale_arg


def _balance(args: argparse.Namespace) -> int:
    from rodin_jupyter.balance.text import Balance
    from rodin_jupyter.http.client import RodinClient

    with RodinClient(base_url=args.base_url) as client:
        reading = client.check_balance()
    balance = Balance(reading.balance, reading.checked_at)
    if args.json:
        _say(json.dumps(balance.to_json()))
    else:
        _say(f"Rodin balance: {format_credits(reading.balance)} credits")
    return 0


def _say(line: str) -> None:
    """Print the answer, or fail: a balance nobody could read must not exit 0."""
    out = sys.stdout
    if out is None:  # started with stdout closed (``>&-``)
        raise OSError("standard output is closed, so the balance could not be printed")
    try:
        out.write(line + "\n")
        out.flush()
    except OSError as exc:
        with contextlib.suppress(OSError, ValueError):  # no second failure at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), out.fileno())
        raise OSError(f"could not print the balance ({exc.strerror or 'write failed'})") from None


def _sandbox(args: argparse.Namespace) -> int:
    from rodin_jupyter.sandbox import Sandbox

    stop = threading.Event()
    with Sandbox(balance=args.balance, host=args.host, port=args.port,
                 balance_scale=args.balance_scale) as sb:
        # Before the lines below: whoever reads them may send SIGTERM at once.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        print(f"Rodin sandbox on {sb.base_url} with {format_credits(sb.balance)} credits.")
        print("In another shell (a sandbox key, not a secret):")
        print(f"  export RODIN_API_BASE={sb.base_url}")
        print(f"  export RODIN_API_KEY={sb.api_key}")
        print("Press Ctrl-C to stop.", flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    count = len(sb.charges)
    print(f"Sandbox stopped. It would have cost {format_credits(sb.spent())} credits "
          f"({count} generation{'' if count == 1 else 's'}).")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from rodin_jupyter.demo import run_demo

    summary = run_demo(notebook=args.notebook, output=args.output, balance=args.balance)
    for line in summary.lines():
        print(line)
    return 0 if summary.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The command line, one sub-command per job."""
    parser = argparse.ArgumentParser(
        prog="rodin-jupyter",
        description="Hyper3D Rodin credit balance, local sandbox and demo.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    balance = commands.add_parser(
        "balance", help="print the balance (key: RODIN_API_KEY, address: RODIN_API_BASE)")
    balance.add_argument("--json", action="store_true", help="print machine-readable JSON")
    balance.add_argument("--base-url", default=None, help="API base URL (default: RODIN_API_BASE)")
    balance.set_defaults(run=_balance)

    sandbox = commands.add_parser("sandbox", help="run a local Rodin-compatible API server")
    sandbox.add_argument("--port", type=port_arg, default=0, help="port (default: any free port)")
    sandbox.add_argument("--host", default="127.0.0.1", help="loopback address to bind")
    sandbox.add_argument("--balance", type=credits_arg, default=Decimal(10),
                         help="starting credits (default: 10)")
    sandbox.add_argument("--balance-scale", type=scale_arg, default=Decimal(1), metavar="N",
                         help="check_balance units per credit: 1 (default) or 10 (tenths)")
    sandbox.set_defaults(run=_sandbox)

    demo = commands.add_parser(
        "demo", help="run notebooks/quickstart.ipynb in a real kernel against a sandbox")
    demo.add_argument("--notebook", default=None,
                      help="a notebook path, or a shipped one by name: quickstart (default), "
                           "guarded_batch, generate, balance_panel")
    demo.add_argument("--output", default=None,
                      help="where to save the executed copy (default: <name>.executed.ipynb)")
    demo.add_argument("--balance", type=credits_arg, default=Decimal(10),
                      help="sandbox starting credits (default: 10)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one line on stderr and a non-zero status for any expected failure."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except (RodinError, OSError, ValueError) as exc:
        if sys.stderr is not None:
            with contextlib.suppress(OSError):
                print(f"rodin-jupyter: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("rodin-jupyter: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
