"""Log records as `serve` and `worker` write them: JSON objects (or text) with the request id of the request."""

from __future__ import annotations

import json
import logging
import logging.config
import sys

import pytest

from gateway.logs import REQUEST_ID, JsonLines, PlainText, RequestContext, log_config


def _record(message: str = "GET %s %d", **extra: object) -> logging.LogRecord:
    args = ("/x", 200) if "%" in message else ()
    record = logging.LogRecord("casebridge.access", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    RequestContext().filter(record)
    return record


def test_a_json_line_carries_the_request_id_of_its_context_and_the_access_fields() -> None:
    context = REQUEST_ID.set("req-0001-abcd")
    try:
        record = _record(method="GET", route="/api/v1/cases/{case_id}", status=200, duration_ms=1.5, color_message="x")
    finally:
        REQUEST_ID.reset(context)
    line = json.loads(JsonLines().format(record))
    assert line.pop("time").endswith("+00:00")
    assert line == {
        "level": "info",
        "logger": "casebridge.access",
        "message": "GET /x 200",
        "request_id": "req-0001-abcd",
        "method": "GET",
        "route": "/api/v1/cases/{case_id}",
        "status": 200,
        "duration_ms": 1.5,
    }


def test_outside_a_request_there_is_no_request_id_and_a_traceback_stays_inside_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("failed", exc_info=sys.exc_info())
    record.exc_info = record.__dict__["exc_info"]
    text = JsonLines().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert "request_id" not in line
    assert line["exception"].startswith("Traceback")
    assert "ValueError: boom" in line["exception"]


def test_a_named_request_id_wins_and_text_lines_show_it() -> None:
    record = _record(request_id="req-from-caller")
    assert PlainText().format(record).endswith("INFO casebridge.access [req-from-caller] GET /x 200")
    assert "[" not in PlainText().format(_record())


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_the_configuration_is_accepted_by_logging(log_format: str) -> None:
    config = log_config(log_format)
    logging.config.dictConfig(config)
    try:
        (handler,) = logging.getLogger().handlers
        assert isinstance(handler.formatter, JsonLines if log_format == "json" else PlainText)
        assert any(isinstance(f, RequestContext) for f in handler.filters)
        assert logging.getLogger("uvicorn.access").propagate is False  # gateway/access_log.py writes those lines
    finally:
        logging.getLogger().handlers.clear()
