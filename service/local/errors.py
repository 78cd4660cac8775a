"""Errors of the local cloud. Shallow on purpose: callers catch ``LocalCloudError`` and print its message."""

from __future__ import annotations

from pathlib import Path


class LocalCloudError(RuntimeError):
    """Base class. ``str(exc)`` is a one-line message fit for a terminal."""


class PrerequisiteMissing(LocalCloudError):
    """Something the stack needs is not installed. ``what`` names it, ``hint`` says how to get it."""

    def __init__(self, what: str, hint: str) -> None:
        super().__init__(f"missing prerequisite: {what}; {hint}")
        self.what = what
        self.hint = hint


class StartupFailed(LocalCloudError):
    """A child process exited or did not answer before the deadline. ``log`` is where its output went."""

    def __init__(self, name: str, reason: str, log: Path | None) -> None:
        where = f" (log: {log})" if log is not None else ""
        super().__init__(f"{name} failed to start: {reason}{where}")
        self.name = name
        self.reason = reason
        self.log = log


class StackBusy(LocalCloudError):
    """Another live launcher owns the state directory."""


class NoStackRunning(LocalCloudError):
    """There is no ready stack in the state directory (no endpoints.json, or its launcher is gone)."""


class Cancelled(LocalCloudError):
    """``start()`` was asked to stop (SIGINT/SIGTERM in ``logpipe local``) before the stack was ready."""
