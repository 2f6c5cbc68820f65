"""Logging set-up: console or one JSON object per line, always through the redactor."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime

from .kernel.config import SECRET_MASK
from .secrets import RedactingFilter

_QUERY_CREDENTIAL = re.compile(
    r"([?&](?:code|state|access_token|refresh_token|id_token|token|api_key|apikey"
    r"|client_secret|password)=)[^&#\s]*",
    re.IGNORECASE,
)


class QueryCredentialFilter(logging.Filter):
    """Masks credentials in the query strings of access log lines: the OAuth callback's
    ``code`` and ``state`` are not known secrets, so the redactor cannot catch them."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, str) and "?" in a for a in args):
            record.args = tuple(
                _QUERY_CREDENTIAL.sub(rf"\g<1>{SECRET_MASK}", a) if isinstance(a, str) else a
                for a in args
            )
        return True


def _last_line(record: logging.LogRecord) -> str:
    """The exception's own line ("KeyError: 'x'") of a record's (redacted) traceback."""
    lines = (record.exc_text or "").strip().splitlines()
    return lines[-1] if lines else ""


class OneLineFormatter(logging.Formatter):
    """A record on one line: an exception as its last line, without the traceback. For
    the CLI's short commands, whose errors are one line; ``serve`` keeps tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self.formatTime(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            exception = _last_line(record) or self.formatException(record.exc_info).splitlines()[-1]
            line += f" ({exception})"
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, tracebacks: bool = True) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            exc = record.exc_text or self.formatException(record.exc_info)
            entry["exc"] = exc if self.tracebacks else exc.strip().splitlines()[-1]
        return json.dumps(entry)


def configure_logging(
    log_format: str = "console", level: int = logging.INFO, *, tracebacks: bool = True
) -> None:
    """Install one stderr handler with the redacting filter (idempotent); without
    ``tracebacks``, an exception is its one last line."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_jackfield", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._jackfield = True  # type: ignore[attr-defined]
    handler.addFilter(RedactingFilter())
    if log_format == "json":
        handler.setFormatter(JsonFormatter(tracebacks))
    elif tracebacks:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    else:
        handler.setFormatter(OneLineFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for quiet in ("alembic", "httpx2", "httpcore2"):  # a line per HTTP request is noise
        logging.getLogger(quiet).setLevel(max(level, logging.WARNING))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, QueryCredentialFilter) for f in access.filters):
        access.addFilter(QueryCredentialFilter())
