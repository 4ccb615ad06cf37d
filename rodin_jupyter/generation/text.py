"""Words and HTML for the progress view of one or more jobs (no widgets, no IPython)."""

from __future__ import annotations

import html
from collections.abc import Sequence

from rodin_jupyter.generation.job import Job, short

COLOURS = {
    "Waiting": "var(--jp-content-font-color2, #757575)",
    "Generating": "var(--jp-warn-color1, #f57c00)",
    "Done": "var(--jp-success-color1, #2e7d32)",
    "Failed": "var(--jp-error-color1, #c62828)",
    "Canceled": "var(--jp-error-color1, #c62828)",
}


def elapsed_text(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


def progress_text(jobs: Sequence[Job], stopped: str | None = None) -> str:
    """One line per task (its ids and states); the batch's stop line last."""
    lines = [repr(job) for job in jobs]
    if stopped:
        lines.append(f"rodin_jupyter: {stopped}")
    return "\n".join(lines) or "rodin_jupyter: nothing submitted"


def progress_html(jobs: Sequence[Job], stopped: str | None = None) -> str:
    """A table: one row per job with its task, state and elapsed time."""
    rows: list[str] = []
    for job in jobs:
        states = job.states or {"": "Waiting"}
        for uuid, state in states.items():
            colour = COLOURS.get(state, COLOURS["Waiting"])
            label = html.escape(job.label[:40]) if job.label else ""
            rows.append(
                f'<tr class="rodin-job-row" data-state="{html.escape(state)}">'
                f"<td title=\"{html.escape(job.task_uuid)}\"><code>{short(job.task_uuid)}</code>"
                f"</td><td><code>{html.escape(short(uuid)) or '…'}</code></td>"
                f"<td>{label}</td>"
                f'<td class="rodin-job-state" style="color:{colour};font-weight:600">'
                f"{html.escape(state)}</td><td>{elapsed_text(job.elapsed(uuid or None))}</td>"
                f"<td style=\"color:var(--jp-error-color1,#c62828)\">"
                f"{html.escape(job.error or '')}</td></tr>")
    done = sum(1 for job in jobs if job.done)
    head = (f'<div class="rodin-jobs-summary">Rodin: {done} of {len(jobs)} task(s) finished'
            "</div>")
    table = ('<style>.rodin-jobs td,.rodin-jobs th{padding:1px 10px 1px 0;text-align:left}'
             '</style><table class="rodin-jobs" style="border-collapse:collapse;font-size:12px">'
             "<tr><th>task</th><th>job</th><th>prompt</th><th>state</th><th>elapsed</th>"
             f"<th></th></tr>{''.join(rows)}</table>")
    stop = (f'<div class="rodin-jobs-stopped" style="color:var(--jp-error-color1,#c62828)">'
            f"{html.escape(stopped)}</div>") if stopped else ""
    return f'<div class="rodin-jobs-view">{head}{table}{stop}</div>'
