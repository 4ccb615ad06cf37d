"""Figure 2: ``%rodin_guard on`` vs off over ordinary cells, and zero requests."""

from __future__ import annotations

import importlib.util
import statistics
import time
from typing import Any

from cells import LINES_PER_CELL, ordinary_cells
from common import Params, Result, no_gc, not_available, profile_text, quiet, verdict
from https_server import ServerProcess

# -- 2. the guard on ordinary cells -----------------------------------------------------


def guard_available(shell: Any) -> str | None:
    """None if ``%rodin_guard`` can be used, else why not."""
    if importlib.util.find_spec("rodin_jupyter.ipython.cell_guard") is None:
        return "guard not available"
    if "rodin_guard" not in shell.magics_manager.magics["line"]:
        return "guard not available: no %rodin_guard after %load_ext"
    return None


def bench_guard(shell: Any, server: ServerProcess, p: Params) -> list[Result]:
    """2: guard on/off over ordinary cells; 2b (info): cells that name Rodin, generate nothing."""
    figure = f"%rodin_guard on / off, {p.guard_cells:,} cells x {LINES_PER_CELL} lines"
    figure_b = "same, cells naming Rodin in a comment (shell-escape test)"
    why = guard_available(shell)
    if why is not None:
        return [not_available("2", "guard_cost", figure, "<= 1.10x, 0 requests", why),
                not_available("2b", "guard_cost_mention", figure_b, "info, 0 requests", why)]

    def switch(on: bool) -> None:
        with quiet():
            shell.run_line_magic("rodin_guard", "on" if on else "off")

    failures: list[str] = []

    def run_block(cells: list[str]) -> float:
        with no_gc():
            start = time.perf_counter()
            for cell in cells:
                outcome = shell.run_cell(cell, store_history=True)
                if not outcome.success and len(failures) < 3:
                    failures.append(repr(outcome.error_before_exec or outcome.error_in_exec))
            return time.perf_counter() - start

    salt = 0

    def next_cells(mention: bool) -> list[str]:
        nonlocal salt
        salt += 1
        return ordinary_cells(p.guard_cells, salt, mention)

    for on in (False, True):  # warm both paths
        for mention in (False, True):
            switch(on)
            run_block(ordinary_cells(min(50, p.guard_cells), 10_000 + on, mention))

    # one block = (cells mention Rodin?, guard on?); the order is reversed every repetition
    blocks = [(False, False), (False, True), (True, False), (True, True)]
    times: dict[tuple[bool, bool], list[float]] = {b: [] for b in blocks}
    requests_on = {False: 0, True: 0}
    for rep in range(p.guard_reps):
        for mention, on in (blocks if rep % 2 == 0 else blocks[::-1]):
            cells = next_cells(mention)
            switch(on)
            before = server.stats()["requests"]
            times[mention, on].append(run_block(cells))
            if on:
                requests_on[mention] += server.stats()["requests"] - before
        switch(False)

    results = []
    for mention, id_, number, fig in ((False, "guard_cost", "2", figure),
                                      (True, "guard_cost_mention", "2b", figure_b)):
        ratios = [t_on / t_off for t_on, t_off in zip(times[mention, True],
                                                        times[mention, False], strict=True)]
        ratio = statistics.median(ratios)
        us = {("on" if on else "off"): statistics.median(times[mention, on]) / p.guard_cells
              * 1e6 for on in (False, True)}
        sent = requests_on[mention]
        if mention:
            status = "miss" if sent or failures else "info"
            goal = "info, 0 requests"
        else:
            status = verdict(ratio <= 1.10 and sent == 0 and not failures)
            goal = "<= 1.10x, 0 requests"
        result = Result(number, id_, fig, ratio, "x", goal, status,
                        f"{ratio:.3f}x, {sent} requests",
                        details={"us_per_cell": us, "ratios": ratios, "requests": sent,
                                 "cells_per_side": p.guard_cells * p.guard_reps})
        result.notes.append(f"per cell: guard off {us['off']:.0f} µs, on {us['on']:.0f} µs "
                            f"({us['on'] - us['off']:+.0f} µs); requests with the guard on: "
                            f"{sent}")

        def profile(mention: bool = mention) -> str:
            cells = next_cells(mention)
            switch(True)
            try:
                return profile_text(lambda: run_block(cells))
            finally:
                switch(False)

        result.details["profile"] = profile
        results.append(result)
    if failures:
        results[0].notes.append(f"cells failed: {failures}")
        results[0].status = "miss"
    return results
