"""Would installing a package change anything in a pinned environment? Exit 1 if so.

    python scripts/check_pins.py VENV_PYTHON 'dist/rodin_jupyter-0.1.0-py3-none-any.whl[demo]'

Runs ``pip install --dry-run --report -`` with VENV_PYTHON (a virtualenv holding only
Colab's pins and what they pulled in) and fails when pip would install any package that is
already there: upgrading, downgrading or reinstalling ipython, ipykernel, ipywidgets,
traitlets, jupyter-client or anything else they brought. Prints what would be added.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any


def canonical(name: str) -> str:
    """PEP 503 name: ``Jupyter_Client`` and ``jupyter-client`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def changes(installed: dict[str, str], report: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(what would change among ``installed``, what would be added) from a pip report."""
    changed, added = [], []
    for item in report.get("install", []):
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        have = installed.get(canonical(name))
        if have is None:
            added.append(f"{name}=={version}")
        else:
            changed.append(f"{name} {have} -> {version}")
    return sorted(changed), sorted(added)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    python, *targets = argv
    listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], check=True,
                            capture_output=True, text=True).stdout
    installed = {canonical(p["name"]): p["version"] for p in json.loads(listed)}
    run = subprocess.run([python, "-m", "pip", "install", "--dry-run", "--quiet",
                          "--report", "-", *targets], capture_output=True, text=True)
    if run.returncode != 0:
        print(f"pip could not resolve {' '.join(targets)} here:\n{run.stderr[-2000:]}",
              file=sys.stderr)
        return 1
    changed, added = changes(installed, json.loads(run.stdout))
    shown = [n for n in ("ipython", "ipykernel", "ipywidgets", "traitlets", "jupyter-client")
             if n in installed]
    pins = ", ".join(f"{n} {installed[n]}" for n in shown)
    print(f"pinned environment: {pins} (+{len(installed) - len(shown)} more)")
    print(f"would add: {' '.join(added) or 'nothing'}")
    if changed:
        print(f"would CHANGE pinned packages: {'; '.join(changed)}", file=sys.stderr)
        return 1
    print("no installed package would change")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
