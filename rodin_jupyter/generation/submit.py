"""``generate()`` and ``generate_many()``: one POST per generation, never retried.

The POST goes out through the package's HTTP session, so the send-time guard (when on)
prices it, checks it against balance, reserve and budget, and ledgers it. A batch also checks
before each submission that the balance and its own budget cover the next price, and stops
there with one line instead of submitting.
"""

from __future__ import annotations

import importlib
import io
import json
import mimetypes
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from rodin_jupyter.errors import RodinError
from rodin_jupyter.generation.job import Job, default_client, short
from rodin_jupyter.guard.pricing import parse_addons, price_request
from rodin_jupyter.http import jobs_api
from rodin_jupyter.http.client import RodinClient

MAX_IMAGES = 5
_MAGIC = ((b"\x89PNG", "png", "image/png"), (b"\xff\xd8", "jpg", "image/jpeg"),
          (b"RIFF", "webp", "image/webp"), (b"GIF8", "gif", "image/gif"))


def image_item(image: Any, index: int) -> jobs_api.FileItem:
    """A path, bytes or a PIL image as an uploaded file (name, content, content type)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        ext, ctype = next(((e, c) for m, e, c in _MAGIC if data.startswith(m)),
                          ("bin", "application/octet-stream"))
        return f"image{index}.{ext}", data, ctype
    if isinstance(image, (str, Path)):
        path = Path(image).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RodinError(f"Could not read the image {path.name}: "
                             f"{exc.strerror or type(exc).__name__}.") from None
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return path.name, data, ctype
    if callable(getattr(image, "save", None)):  # a PIL image
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return f"image{index}.png", buffer.getvalue(), "image/png"
    raise RodinError(f"Image {index + 1} is a {type(image).__name__}; give a path, bytes "
                     "or a PIL image.")


def _field(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return json.dumps(list(value))  # array fields travel as JSON strings
    return str(value)


def build_fields(prompt: str | None, tier: str | None,
                 addons: str | Iterable[str] | None,
                 extra: Mapping[str, Any]) -> dict[str, str]:
    """The form fields as the service takes them (addons and arrays as JSON strings)."""
    fields: dict[str, str] = {}
    if prompt is not None:
        fields["prompt"] = str(prompt)
    if tier is not None:
        fields["tier"] = str(tier)
    names = parse_addons(addons)
    if names:
        fields["addons"] = json.dumps(names)
    for name, value in extra.items():
        if value is not None:
            fields[name] = _field(value)
    return fields


def generate(prompt: str | None = None, images: Sequence[Any] | None = None,
             tier: str | None = None, addons: str | Iterable[str] | None = None, *,
             client: RodinClient | None = None, watch: bool = True, **fields: Any) -> Job:
    """Submit one generation and return its :class:`Job` (displayed as a live progress view).

    ``images``: up to five paths, bytes or PIL images. Other documented fields
    (``geometry_file_format``, ``material``, ``quality``, ``seed``, ...) pass through.
    A refusal raises a one-line :class:`~rodin_jupyter.RodinError` with the service's code.
    """
    uploads = [image_item(image, i) for i, image in enumerate(images or ())]
    if len(uploads) > MAX_IMAGES:
        raise RodinError(f"At most {MAX_IMAGES} images per generation; got {len(uploads)}.")
    if not uploads and not (prompt and str(prompt).strip()):
        raise RodinError("Give a prompt or at least one image.")
    sent = build_fields(prompt, tier, addons, fields)
    price = price_request("rodin", sent)  # an unknown tier or addon fails here, unsent
    used = client or default_client()
    answer = jobs_api.submit(used, sent, uploads)
    job = Job(answer.task_uuid, answer.subscription_key, job_uuids=answer.job_uuids,
              price=answer.consumed if answer.consumed is not None else price,
              fields=sent, client=used, label=(prompt or "")[:60])
    if watch:
        job.watch()
    return job


class Batch:
    """Several jobs shown in one progress view; ``stopped`` says why submitting stopped."""

    def __init__(self, jobs: Sequence[Job] = (), stopped: str | None = None) -> None:
        self.jobs = list(jobs)
        self.stopped = stopped

    def __iter__(self) -> Any:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> Job:
        return self.jobs[index]

    @property
    def done(self) -> bool:
        return all(job.done for job in self.jobs)

    def wait(self, timeout: float | None = None) -> Batch:
        """Wait for every job; the first failure raises its one-line error."""
        for job in self.jobs:
            job.wait(timeout)
        return self

    def download(self, folder: str | Path | None = None) -> list[Path]:
        """Each task's files into its own sub-folder (named by the task's short id)."""
        from rodin_jupyter.generation.files import models_folder

        base = models_folder(folder)
        return [p for job in self.jobs for p in job.download(base / short(job.task_uuid))]

    def previews(self, folder: str | Path | None = None) -> list[Any]:
        from rodin_jupyter.generation.files import models_folder

        base = models_folder(folder)
        return [job.preview(base / short(job.task_uuid)) for job in self.jobs]

    def __repr__(self) -> str:
        lines = [repr(job) for job in self.jobs] or ["<rodin Batch: nothing submitted>"]
        if self.stopped:
            lines.append(f"stopped: {self.stopped}")
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None,
                          **kwargs: Any) -> dict[str, Any]:
        from rodin_jupyter.widgets.jobs import progress_bundle

        return progress_bundle(self, self.jobs, stopped=lambda: self.stopped)


def _guard_refusal(price: Decimal) -> str | None:
    """The send-time guard's up-front check (balance, reserve, budget) when the guard is on.

    None when the guard is off or not installed (then the batch checks the balance itself).
    """
    try:
        sendtime = importlib.import_module("rodin_jupyter.guard.sendtime")
        blocked = importlib.import_module("rodin_jupyter.guard.decision").GuardBlocked
    except ImportError:
        return None
    guard = sendtime.get_guard()
    if not guard.active:
        return None
    from rodin_jupyter.balance.settings import settings as shared

    try:
        guard.account.check_upfront(price, "the next POST /rodin",
                                    shared.guard.reserve, shared.guard.on_error,
                                    lambda text: None)
    except blocked as exc:  # its words are for a cell; here a request was not sent
        return str(exc).rstrip(".").replace(": not run;", ": not sent;")
    return ""


def _covered(price: Decimal, spent: Decimal, budget: Decimal | None) -> str | None:
    """Why the next submission must not go out, or None."""
    from rodin_jupyter.balance.display import format_credits
    from rodin_jupyter.balance.monitor import get_monitor

    if budget is not None and spent + price > budget:
        return (f"the next generation costs {format_credits(price)} credits and the batch "
                f"budget has {format_credits(budget - spent)} of {format_credits(budget)} left")
    guarded = _guard_refusal(price)
    if guarded is not None:  # the guard read the balance and checked its budget
        return guarded or None
    try:
        balance = get_monitor().refresh().balance
    except RodinError as exc:
        return f"the balance could not be read ({exc})"
    if balance < price:
        return (f"the next generation costs {format_credits(price)} credits and the "
                f"balance is {format_credits(balance)}")
    return None


def generate_many(requests: Iterable[Mapping[str, Any] | str], *,
                  budget: Decimal | float | str | None = None,
                  client: RodinClient | None = None) -> Batch:
    """Submit several generations (dicts of ``generate`` arguments, or prompts) as one batch.

    Before each submission the balance (read fresh) and ``budget`` (credits for this batch)
    must cover its price; otherwise submitting stops there, with one line in ``stopped``.
    A refused submission stops the batch the same way; what was submitted keeps running.
    """
    limit = None if budget is None else Decimal(str(budget))
    batch = Batch()
    spent = Decimal(0)
    for number, spec in enumerate(requests, start=1):
        args = {"prompt": spec} if isinstance(spec, str) else dict(spec)
        try:
            fields = build_fields(args.get("prompt"), args.get("tier"), args.get("addons"),
                                  {k: v for k, v in args.items()
                                   if k not in ("prompt", "tier", "addons", "images")})
            price = price_request("rodin", fields)
            reason = _covered(price, spent, limit)
            if reason is None:
                job = generate(client=client, **args)
                batch.jobs.append(job)
                spent += job.price if job.price is not None else price
                continue
        except RodinError as exc:
            reason = str(exc).rstrip(".")
        batch.stopped = (f"stopped before generation {number}: {reason}; "
                         f"{len(batch.jobs)} submitted.")
        break
    return batch
