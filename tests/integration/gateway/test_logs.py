"""The JSON logs of a whole referral loop: every line an object, request lines with their id, no personal data."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from gateway.bus import ENVELOPE_STREAM
from gateway.logs import JsonLines, RequestContext, log_config
from gateway.runtime import Runtime
from tests.integration.helpers.agencies import (
    CHILD_BIRTH,
    CHILD_NAME,
    CHILD_SNILS,
    PERSONAL_DATA,
    Agency,
    dpo_of,
    open_case,
    referral_body,
    status_is,
)
from tests.polling import eventually

# The free text of the loop below and of open_case, beside the family's names, birth dates and SNILS.
FREE_TEXT = (
    "Мать одна воспитывает дочь",
    "Семья нуждается в помощи органа опеки",
    "Садовая",
    "астма",
    "жильё",
    "Мать придёт во вторник",
    "Назначен опекун",
    "Мать отозвала согласие",
)


class _NotTheTestsClient(logging.Filter):
    """The test's HTTP client logs the URLs it asks for: those lines are the test's, not casebridge's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(("httpx", "httpcore"))


@contextlib.contextmanager
def json_log() -> Iterator[io.StringIO]:
    """This process's log records as `serve` and `worker` write them (gateway.logs.log_config), into a buffer."""
    handler_config = log_config("json")["handlers"]["stderr"]
    assert handler_config["formatter"] == "casebridge"
    assert handler_config["filters"] == ["request"]
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonLines())
    handler.addFilter(RequestContext())
    handler.addFilter(_NotTheTestsClient())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_a_whole_referral_loop_logs_request_ids_and_no_personal_data(
    agencies: tuple[Agency, Agency, Agency], api: httpx.AsyncClient, runtime: Runtime
) -> None:
    centre, opeka, _ = agencies
    answered: list[str] = []

    async def note_request_id(response: httpx.Response) -> None:
        answered.append(response.headers["x-request-id"])

    api.event_hooks["response"].append(note_request_id)
    with json_log() as log:
        case, consent = await open_case(centre, opeka)
        sent = await centre.post("/api/v1/referrals", referral_body(case, opeka.id, ["identity", "family"]))
        assert sent.status_code == 201, sent.text
        referral_id = sent.json()["id"]
        await eventually(lambda: status_is(opeka, referral_id, "received"))
        assert (await opeka.get(f"/api/v1/referrals/{referral_id}")).json()["subjects"][0]["full_name"]
        message = await centre.post(f"/api/v1/referrals/{referral_id}/messages", {"body": FREE_TEXT[5]})
        assert message.status_code == 201, message.text
        for step in ({"to": "accepted"}, {"to": "in-progress"}):
            assert (await opeka.post(f"/api/v1/referrals/{referral_id}/transition", step)).status_code == 200
        completed = {"to": "completed", "outcome": {"result": "resolved", "note": FREE_TEXT[6]}}
        assert (await opeka.post(f"/api/v1/referrals/{referral_id}/transition", completed)).status_code == 200
        await eventually(lambda: status_is(centre, referral_id, "completed"))
        withdrawn = await centre.post(f"/api/v1/consents/{consent['id']}/withdraw", {"reason": FREE_TEXT[7]})
        assert withdrawn.status_code == 200, withdrawn.text
        # Personal data in a query string and in a request that is refused.
        searched = await centre.get(f"/api/v1/referrals?box=outgoing&status={PERSONAL_DATA[0]}")
        assert searched.status_code == 400
        refused = await centre.post("/api/v1/cases", {"title": PERSONAL_DATA[0], "subjects": "not a list"})
        assert refused.status_code == 400
        assert (await api.get(f"/no/such/page?name={PERSONAL_DATA[0]}")).status_code == 404
        # A DPO's lookup of the child by her details, found and not found, and with a malformed SNILS.
        dpo = await dpo_of(api, runtime, centre)
        for details, status in (
            ({"full_name": CHILD_NAME, "birth_date": CHILD_BIRTH, "snils": CHILD_SNILS}, 200),
            ({"full_name": CHILD_NAME, "birth_date": "2015-04-13"}, 404),
            ({"full_name": CHILD_NAME, "birth_date": CHILD_BIRTH, "snils": CHILD_SNILS[:-1]}, 400),
        ):
            assert (await dpo.post("/api/v1/audit/subjects/lookup", details)).status_code == status
        # Something for a Worker to log outside any request: the inbox parks what is no envelope.
        await runtime.bus.js.publish(
            f"cb.v2.{opeka.id}.{uuid.uuid4()}.referral", b"not an envelope", stream=ENVELOPE_STREAM
        )
        await eventually(lambda: "envelope parked: malformed" in log.getvalue())

    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    assert all(isinstance(line, dict) and {"time", "level", "logger", "message"} <= set(line) for line in lines)
    text = log.getvalue()
    for value in (*PERSONAL_DATA, *FREE_TEXT):
        for form in (value, urllib.parse.quote(value), json.dumps(value)):
            assert form not in text, f"{value!r} is in the log"
    for identifier in (referral_id, case["id"], consent["id"], *(s["id"] for s in case["subjects"])):
        assert identifier not in text

    access = [line for line in lines if line["logger"] == "casebridge.access"]
    assert [line["request_id"] for line in access] == answered  # one line per request, with the id it was given
    assert all(set(line) >= {"method", "route", "status", "duration_ms"} for line in access)
    assert {"/api/v1/referrals/{referral_id}/transition", "/api/v1/consents/{consent_id}/withdraw"} <= {
        line["route"] for line in access
    }
    _no_request_id_outside_requests(lines, set(answered))


def _no_request_id_outside_requests(lines: list[dict[str, Any]], request_ids: set[str]) -> None:
    """Lines with a request id name one the client was given; the Workers' lines (relay, inbox) name none."""
    assert {line["request_id"] for line in lines if "request_id" in line} <= request_ids
    workers = [line for line in lines if line["logger"].startswith(("casebridge.exchange", "exchange.", "audit."))]
    assert workers
    assert all("request_id" not in line for line in workers)
