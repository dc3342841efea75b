"""Log lines of `serve` and `worker` processes: one JSON object per line (or plain text), with the request's id.

Every record of a request (its access line, a warning it caused, an unexpected error's traceback) carries that
request's id, the one its response sends as X-Request-Id: gateway.access_log sets it for the request's context.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import logging.config
from typing import Any, Final

# The id of the request being served in this context; None outside requests (Workers, start-up).
REQUEST_ID: Final = contextvars.ContextVar[str | None]("casebridge_request_id", default=None)

# What a record may carry beyond the message, and nothing else: an access line's fields (gateway.access_log) and the
# request id. Other attributes (uvicorn's colour copy of the message, for one) are left out.
ACCESS_FIELDS: Final = ("method", "route", "status", "duration_ms")


class RequestContext(logging.Filter):
    """Gives each record the id of the request it was logged for, unless the caller named one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True


class JsonLines(logging.Formatter):
    """One JSON object per record: time (UTC, RFC 3339), level, logger, message, then request_id, the access line's
    fields and the traceback (`exception`) when the record has them."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if (request_id := getattr(record, "request_id", None)) is not None:
            line["request_id"] = request_id
        for name in ACCESS_FIELDS:
            if (value := getattr(record, name, None)) is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class PlainText(logging.Formatter):
    """`time level logger [request id] message` for reading in a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(request)s%(message)s")

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        record.request = f"[{request_id}] " if request_id else ""
        return super().format(record)


def log_config(log_format: str) -> dict[str, Any]:
    """The dictConfig of a `serve` or `worker` process, also handed to uvicorn (which applies it in every web
    process): every logger to standard error in `log_format`; uvicorn's own access log off, as gateway.access_log
    writes a line per request with the route template instead of the path."""
    formatter = JsonLines if log_format == "json" else PlainText
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": RequestContext}},
        "formatters": {"casebridge": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "casebridge",
                "filters": ["request"],
            }
        },
        "root": {"level": "INFO", "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's loggers pass their records up to the root handler rather than printing them their own way.
            "uvicorn": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.error": {"level": "INFO", "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }


def configure_logging(log_format: str) -> None:
    """Apply log_config in this process (a `worker`; uvicorn applies it itself for `serve`)."""
    logging.config.dictConfig(log_config(log_format))
