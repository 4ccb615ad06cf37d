"""Generating from a notebook: submit, follow, download and preview Rodin jobs."""

from rodin_jupyter.generation.job import Job, JobFailedError
from rodin_jupyter.generation.settings import settings
from rodin_jupyter.generation.submit import Batch, generate, generate_many

__all__ = ["Batch", "Job", "JobFailedError", "generate", "generate_many", "settings"]
