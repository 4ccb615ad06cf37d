"""Ordinary notebook cells for the guard benchmark: 30 lines each, no Rodin call in sight."""

from __future__ import annotations

TEMPLATE = """\
import math{comment}
values = [j * {a} % 97 for j in range(40)]
total = 0
count = 0
for v in values:
    if v % 3 == 0:
        total += v
        count += 1
    elif v % 5 == 0:
        total -= v // 5
mean = total / max(count, 1)
spread = max(values) - min(values)


def scale(x, factor={b}):
    \"\"\"Scale and shift one value.\"\"\"
    return x * factor + math.sqrt(abs(x))


scaled = [scale(v) for v in values[:10]]
table = {{f"k{{i}}": v for i, v in enumerate(values[:8])}}
label = "run-{a}-" + str(len(table))
pairs = sorted(zip(values[:6], scaled[:6]), key=lambda p: p[1])
summary = {{
    "total": total,
    "mean": round(mean, 3),
    "first": pairs[0] if pairs else None,
    "label": label.upper(),
}}
del v
"""

LINES_PER_CELL = 30


MENTION = "  # helpers for the Rodin batch below"
"""A comment that names Rodin: the guard's text gate lets the cell through to the AST check."""


def ordinary_cell(index: int, salt: int = 0, mention: bool = False) -> str:
    """One cell of ``LINES_PER_CELL`` lines; ``index``/``salt`` only change its constants.

    ``mention=True`` adds a comment naming Rodin to the first line: the cell still
    generates nothing, but no longer passes the guard's cheap text test.
    """
    a = 3 + (index * 7 + salt * 13) % 9973
    b = 1 + (index + salt) % 17
    return TEMPLATE.format(a=a, b=b, comment=MENTION if mention else "")


def ordinary_cells(count: int, salt: int = 0, mention: bool = False) -> list[str]:
    """``count`` distinct ordinary cells (distinct text, so no per-source cache helps)."""
    return [ordinary_cell(i, salt, mention) for i in range(count)]

