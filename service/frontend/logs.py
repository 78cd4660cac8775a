"""Structured logs: one JSON object per line on stderr, via stdlib logging. Secrets are never passed to loggers.

Every JSON line carries ``severity`` (the level name) as well as ``level``: Cloud Logging reads ``severity`` from a
JSON line, and GKE marks every line it cannot parse that way, written to stderr, as ERROR.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "severity", "logger", "msg", ...extra fields}``; exceptions as ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "severity": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in vars(record).items() if k not in _STD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: str) -> None:
    """Route the root logger to stderr as JSON lines (called once by ``logpipe serve``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


#: ``LOGPIPE_LOG_FORMAT`` values for the replicator's and loader's commands.
LOG_FORMATS = ("text", "json")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_cli(level: str, fmt: str) -> None:
    """Log to stderr as ``text`` (``time LEVEL logger: message``) or ``json`` (``JsonFormatter``), for ``logpipe
    replicate``/``finalize``/``load``. Like ``logging.basicConfig``, it changes nothing when the root logger already
    has handlers. Raises ``ValueError`` for any other ``fmt``."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"LOGPIPE_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
