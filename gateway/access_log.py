"""uvicorn's access log without what must not be written to logs: query strings and the secret of invitation links.

Query strings carry search terms (a DPO may search for a colleague's address, a directory search may name a
district and a problem), and an invitation link's last path segment is the only credential of a pending account.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

_INVITATION = re.compile(r"^(/account/invitation/)[^/?#]+")


def redact(path: str) -> str:
    """The request path as it may be logged."""
    path = path.split("?", 1)[0]
    return _INVITATION.sub(r"\1<redacted>", path)


class RedactedAccessLog(logging.Filter):
    """Rewrites uvicorn's access-log record, whose arguments are (client, method, path with query, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            record.args = (args[0], args[1], redact(args[2]), args[3], args[4])
        return True


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration with the access log passed through RedactedAccessLog."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": RedactedAccessLog}
    config["handlers"]["access"]["filters"] = ["redact"]
    return config
