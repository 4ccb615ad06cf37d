"""Figures 1 (warm ``%rodin_balance`` vs the snippet, 1b vs the floor) and 5 (cached reads)."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from common import BENCH_KEY, Params, Result, profile_text, timed, verdict
from https_server import ServerProcess

# -- 1. warm %rodin_balance vs the docs' snippet ---------------------------------------


def bench_balance(shell: Any, server: ServerProcess, p: Params) -> list[Result]:
    """1: the magic vs the docs' snippet; 1b: the magic vs a bare kept-alive GET (the floor)."""
    import requests

    base, key = server.base_url, BENCH_KEY

    def snippet() -> Any:  # Hyper3D's docs, verbatim: a new connection every call
        return requests.get(f"{base}/check_balance",
                            headers={"Authorization": f"Bearer {key}"}).json()

    def magic() -> Any:
        return shell.run_line_magic("rodin_balance", "")

    from rodin_jupyter.balance.monitor import get_monitor

    def client() -> Any:  # the package's HTTP layer alone, without IPython or the monitor
        return get_monitor().client().check_balance()

    floor_session = requests.Session()

    def floor() -> Any:  # plain requests with a kept-alive connection: the HTTP floor
        return floor_session.get(f"{base}/check_balance",
                                 headers={"Authorization": f"Bearer {key}"}).json()

    expected = magic()  # warm: the client exists, its connection is open
    if str(expected) != str(snippet()["balance"]) or floor()["balance"] != snippet()["balance"]:
        raise RuntimeError("the magic and the snippet disagree about the balance")
    for fn in (magic, client, snippet, floor):
        timed(fn, 3)

    sides: dict[str, Callable[[], Any]] = {"magic": magic, "client": client,
                                           "snippet": snippet, "floor": floor}
    times: dict[str, list[float]] = {name: [] for name in sides}
    magic_requests = magic_connections = 0
    ratios: list[float] = []
    floor_ratios: list[float] = []
    for rep in range(p.balance_reps):
        names = list(sides)
        names = names[rep % len(names):] + names[:rep % len(names)]  # rotate the order
        per_rep: dict[str, float] = {}
        for name in names:
            before = server.stats()
            per_rep[name] = timed(sides[name], p.balance_calls) / p.balance_calls
            if name == "magic":
                after = server.stats()
                magic_requests += after["requests"] - before["requests"]
                magic_connections += after["connections"] - before["connections"]
        for name, value in per_rep.items():
            times[name].append(value)
        ratios.append(per_rep["magic"] / per_rep["snippet"])
        floor_ratios.append(per_rep["magic"] / per_rep["floor"])
    floor_session.close()

    ratio = statistics.median(ratios)
    ms = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    calls = p.balance_calls * p.balance_reps
    result = Result(
        "1", "balance_vs_snippet", "warm %rodin_balance / docs' requests.get snippet",
        ratio, "x", "<= 0.6x", verdict(ratio <= 0.6), f"{ratio:.2f}x",
        details={"ms_per_call": ms, "calls_per_side": calls, "ratios": ratios,
                 "magic_vs_floor": statistics.median(floor_ratios),
                 "magic_requests": magic_requests, "magic_new_connections": magic_connections},
    )
    result.notes.append(
        f"per call: %rodin_balance {ms['magic']:.2f} ms (RodinClient.check_balance alone "
        f"{ms['client']:.2f} ms), snippet {ms['snippet']:.2f} ms, keep-alive "
        f"requests.Session floor {ms['floor']:.2f} ms "
        f"(magic/floor {result.details['magic_vs_floor']:.2f}x)")
    result.notes.append(f"%rodin_balance: {magic_requests} requests over "
                        f"{magic_connections} new connection(s) for {calls} calls")
    if magic_requests != calls:
        result.status = "miss"
        result.notes.append(f"expected exactly {calls} requests from the magic")
    result.details["profile"] = lambda: profile_text(lambda: timed(magic, p.balance_calls))
    floor_ratio = result.details["magic_vs_floor"]
    floor_row = Result(
        "1b", "balance_vs_floor", "warm %rodin_balance / kept-alive requests.Session.get",
        floor_ratio, "x", "<= 1.3x", verdict(floor_ratio <= 1.3), f"{floor_ratio:.2f}x",
        details={"ratios": floor_ratios, "ms_per_call": ms})
    floor_row.details["profile"] = result.details["profile"]
    return [result, floor_row]


# -- 5. cached reads --------------------------------------------------------------------


def bench_cached(shell: Any, server: ServerProcess, p: Params) -> list[Result]:
    from rodin_jupyter.balance.monitor import get_monitor
    from rodin_jupyter.balance.settings import settings

    monitor = get_monitor()
    monitor.refresh()
    ttl = settings.balance.cached_max_age

    def cached_magic() -> Any:
        return shell.run_line_magic("rodin_balance", "--cached")

    def cached_read() -> Any:
        return monitor.read(max_age=ttl)

    cases: list[tuple[str, str, str, Callable[[], Any], int]] = [
        ("5a", "cached_magic", "%rodin_balance --cached (within TTL)", cached_magic,
         p.cached_magic_calls),
        ("5b", "cached_read", "get_monitor().read(max_age=ttl)", cached_read, p.cached_read_calls),
    ]
    from rodin_jupyter.guard.sendtime import get_guard

    account = get_guard().account
    account.read_fresh()  # the reading the send-time check then reuses (before the count)
    cost, reserve = Decimal("0.5"), Decimal(0)

    def cached_guard() -> Any:  # what a billable request meets while that reading is young
        ticket = account.admit(cost, "POST /rodin", reserve, "block", lambda _line: None)
        account.settle(ticket, charged=False, accepted=False)
        return ticket

    cases.append(("5c", "cached_guard", "the send-time guard's balance check (Account.admit)",
                  cached_guard, p.cached_read_calls))

    before = server.balance_requests()
    results = []
    for number, id_, figure, fn, calls in cases:
        timed(fn, min(100, calls))
        per_call = [timed(fn, calls) / calls for _ in range(p.cached_reps)]
        us = statistics.median(per_call) * 1e6
        result = Result(number, id_, figure, us, "µs", "< 1000 µs, 0 requests", verdict(us < 1000),
                        f"{us:.1f} µs", details={"us_per_call": [t * 1e6 for t in per_call],
                                                 "calls": calls * p.cached_reps})
        result.details["profile"] = lambda fn=fn, calls=calls: profile_text(
            lambda: timed(fn, calls))
        results.append(result)
    requests_made = server.balance_requests() - before
    for result in results:
        result.details["requests"] = requests_made
        if requests_made:
            result.status = "miss"
            result.notes.append(f"cached reads sent {requests_made} request(s)")
    results[0].notes.append(f"requests during {sum(r.details['calls'] for r in results):,} "
                            f"cached reads: {requests_made}")
    return results
