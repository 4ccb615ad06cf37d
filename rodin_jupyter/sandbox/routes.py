"""What the service does with each request: route, check, charge, answer.

No sockets here: :class:`Service` turns (method, path, body) into a :class:`Response`, so
every rule can be read in one place and the HTTP layer stays a thin shell around it. It
answers in two steps (:meth:`Service.gate`, then :meth:`Service.handle`) so that injected
faults fall between them, on requests that reach an endpoint.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal

from rodin_jupyter.guard.price_table import PriceTable

from . import answers, rules
from .answers import Response
from .faults import FaultPlan
from .forms import ParsedBody, parse_body
from .ledger import Ledger, SandboxRequestError, sandbox_price
from .outputs import file_bytes
from .tasks import DownloadLinks, TaskBoard

ROUTES: Mapping[str, str] = {
    "/check_balance": "GET",
    "/rodin": "POST",
    "/rodin_texture_only": "POST",
    "/bang": "POST",
    "/status": "POST",
    "/download": "POST",
}
GENERATION_PATHS = ("/rodin", "/rodin_texture_only", "/bang")


class Service:
    """The service's state (ledger, tasks, links, faults) and its per-endpoint behaviour."""

    def __init__(self, ledger: Ledger, board: TaskBoard, links: DownloadLinks,
                 plan: FaultPlan, prices: PriceTable, balance_scale: Decimal,
                 max_parallel: int | None, origin: Callable[[], str]) -> None:
        self.ledger, self.board, self.links, self.plan = ledger, board, links, plan
        self.prices = prices
        self.balance_scale = balance_scale
        self.max_parallel = max_parallel
        self.origin = origin
        self._submit_lock = threading.Lock()

    def gate(self, method: str, path: str, is_api: bool, authorized: bool) -> Response | None:
        """The refusal for a request that never reaches an endpoint (unknown path, bad key,
        wrong method), or None when it does: only then may an injected fault take it."""
        if not is_api:
            if method == "GET" and path.startswith("/files/"):
                return None
            return answers.refusal(404, "NOT_FOUND", f"No such path: {path[:80]}")
        if not authorized:
            return answers.unauthorized()
        expected = ROUTES.get(path)
        if expected is None:
            return answers.refusal(404, "NOT_FOUND", f"No such endpoint: {path[:80]}")
        if method != expected:
            response = answers.refusal(405, "METHOD_NOT_ALLOWED", f"use {expected}")
            response.headers["Allow"] = expected
            return response
        return None

    def handle(self, path: str, is_api: bool, content_type: str | None,
               body: bytes) -> Response:
        """The endpoint's answer to a request :meth:`gate` let through."""
        if not is_api:
            return self.serve_file(path)
        if path == "/check_balance":
            return answers.balance(self.ledger.balance * self.balance_scale)
        try:
            parsed = parse_body(content_type, body)
            if path in GENERATION_PATHS:
                return self.generate(path, parsed)
            if path == "/status":
                return self.status(parsed)
            return self.download(parsed)
        except SandboxRequestError as exc:
            return answers.refusal(exc.status, exc.code, exc.message)

    def generate(self, endpoint: str, parsed: ParsedBody) -> Response:
        """Check the documented rules, price, refuse or charge, then start the task."""
        rules.check_generation(endpoint, parsed)
        price = sandbox_price(endpoint, parsed.fields, self.prices)
        preview_job = endpoint == "/rodin" and rules.preview_render(parsed)
        task_uuid = str(uuid.uuid4())
        with self._submit_lock:  # count, charge and create as one step: the limit holds
            if self.max_parallel is not None and self.board.running() >= self.max_parallel:
                return answers.refusal(201, answers.PARALLELISM_LIMIT)
            if self.ledger.try_charge(task_uuid, endpoint, price) is None:
                return answers.refusal(201, answers.INSUFFICIENT_FUNDS)
            outcomes = self.plan.take_outcomes(2 if preview_job else 1)
            task = self.board.create(task_uuid, endpoint, rules.geometry_format(parsed),
                                     preview_job, outcomes)
        return answers.submitted(task.task_uuid, [j.uuid for j in task.jobs],
                                 task.subscription_key, price)

    def status(self, parsed: ParsedBody) -> Response:
        task = self.board.by_key(rules.required_text(parsed, "subscription_key"))
        if task is None:
            return answers.refusal(404, answers.INVALID_REQUEST, "Unknown subscription_key")
        return answers.status(self.board.states(task))

    def download(self, parsed: ParsedBody) -> Response:
        task = self.board.by_uuid(rules.required_text(parsed, "task_uuid"))
        if task is None:
            return answers.refusal(404, answers.INVALID_REQUEST,
                                   "Unknown task_uuid (send the task's uuid, not a job's)")
        origin = self.origin()
        return answers.download([(origin + self.links.issue(task.task_uuid, name), name)
                                 for name in self.board.ready_files(task)])

    def serve_file(self, path: str) -> Response:
        """A download link: the file while the link lives, 403 once it has expired."""
        link = self.links.resolve(path)
        if link is False:
            return answers.expired_url()
        found = file_bytes(link[1]) if isinstance(link, tuple) else None
        if found is None:
            return answers.refusal(404, "NOT_FOUND", "No such file")
        return Response(200, found[0], found[1])
