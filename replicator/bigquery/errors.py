"""Errors of BigQuery loading. Shallow on purpose: a caller either fixes its configuration or retries later."""

from __future__ import annotations

import logging


class BigQueryLoadError(Exception):
    """Base of every error this package raises on purpose."""


class SchemaIncompatible(BigQueryLoadError):
    """The catalog asks for a table schema the live table cannot evolve into (removed, retyped or REQUIRED field), or
    a user-facing name is taken by something that is not ours. Raised at start-up, before anything is changed.

    Attributes:
        problems: One human-readable line per offending column or table.
    """

    def __init__(self, problems: list[str]) -> None:
        super().__init__(
            "the catalog is incompatible with the live BigQuery tables "
            "(fields are append-only; see docs/bigquery.md):\n  " + "\n  ".join(problems)
        )
        self.problems = tuple(problems)


class LoadFailed(BigQueryLoadError):
    """A load was given up for good: the job failed with a permanent reason, or retryable failures went on past
    ``give_up_after_seconds`` (or ``max_attempts`` jobs).

    Attributes:
        job_id: The last job id tried.
        reason: BigQuery's error reason (``invalid``, ``backendError``, ...).
        message: BigQuery's error message.
        attempts: How many jobs were tried.
    """

    def __init__(self, job_id: str, reason: str, message: str, attempts: int) -> None:
        super().__init__(f"load {job_id} failed after {attempts} attempt(s): {reason}: {message}")
        self.job_id = job_id
        self.reason = reason
        self.message = message
        self.attempts = attempts


class LoadPending(BigQueryLoadError):
    """A load could not be finished now (BigQuery unreachable, job still running past the wait): try again later.
    Nothing is lost: the next try reuses the same job ids. Callers log it at ``log_level``."""

    log_level = logging.WARNING


class LoadDenied(LoadPending):
    """``LoadPending`` because BigQuery answered 403 without a quota reason: a missing permission. It is retried like
    any pending load (a grant fixes it), but logged as an error, since it does not go away by itself."""

    log_level = logging.ERROR
