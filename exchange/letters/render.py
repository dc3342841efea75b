"""Laying a letter out: the content of one letter, what its typst templates print (per kind, Russian and English),
and the renderer that lays letters and casebridge's other PDFs out in a pool of processes."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import uuid
import zoneinfo
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

from exchange.letters.labels import LABELS
from exchange.letters.typesetting import LayoutFailed, PdfDocument, typeset
from tenants.calendar import format_day
from tenants.errors import CasebridgeError

log = logging.getLogger("casebridge.exchange")

TEMPLATES: Final = Path(__file__).parent / "templates"
LANGUAGES: Final = ("ru", "en")
KINDS: Final = ("referral", "petition", "document_request", "information_letter", "plan_task")
# A letter is a few pages of text; anything near this means something went wrong. It travels inside the envelope,
# whose body is limited to 4 MiB (exchange/transport/envelopes.py), base64-encoded.
MAX_LETTER_BYTES: Final = 1024 * 1024


class LetterUnavailable(CasebridgeError):
    """This node cannot lay out letters or its other PDFs (the PDF engine is missing), or a letter cannot be made."""


@dataclass(frozen=True, slots=True)
class Party:
    """The sender's letterhead or the addressee, from the tenant's directory profile."""

    name: str
    region: str | None = None
    address: str | None = None
    phone: str | None = None
    email: str | None = None
    website: str | None = None


@dataclass(frozen=True, slots=True)
class Annex:
    """One enclosure listed under the letter: `key` names its heading, `count` the number of items in it."""

    key: str
    count: int = 1


@dataclass(frozen=True, slots=True)
class LetterContent:
    """Everything one letter says. Subject data is exactly the referral's projection, never more."""

    language: str
    kind: str
    registration_number: str
    date: dt.date
    sender: Party
    addressee: Party
    referral_id: uuid.UUID
    case_ref: str
    purpose: str
    problem: str
    requested_service: str
    urgency: str
    respond_by: dt.date  # the deadlines' days, as the sender picked them
    complete_by: dt.date
    legal_basis: Mapping[str, str]
    categories: tuple[str, ...]
    signer_name: str
    signer_role: str | None
    subjects: tuple[Mapping[str, Any], ...] = ()
    needs: Mapping[str, str] | None = None
    summary: str | None = None
    plan: Mapping[str, str] | None = None
    annexes: tuple[Annex, ...] = field(default=())


def content_to_json(content: LetterContent) -> dict[str, Any]:
    """The content as JSON, kept (sealed) with a pending letter so it is laid out exactly as it was numbered."""
    data = dataclasses.asdict(content)
    data["referral_id"] = str(content.referral_id)
    for name in ("date", "respond_by", "complete_by"):
        data[name] = getattr(content, name).isoformat()
    return data


def _day(data: Mapping[str, Any], name: str) -> dt.date:
    """A day of the content; a letter numbered before deadlines were days kept each deadline as an instant and the
    `zone` it was to be shown in, and is laid out with that instant's day there, as it would have been."""
    text = str(data[name])
    if "zone" not in data or len(text) == 10:
        return dt.date.fromisoformat(text)
    return dt.datetime.fromisoformat(text).astimezone(zoneinfo.ZoneInfo(str(data["zone"]))).date()


def content_from_json(data: Mapping[str, Any]) -> LetterContent:
    """The inverse of `content_to_json`."""
    values = {k: v for k, v in data.items() if k != "zone"}
    values.update(
        referral_id=uuid.UUID(str(data["referral_id"])),
        date=_day(data, "date"),
        respond_by=_day(data, "respond_by"),
        complete_by=_day(data, "complete_by"),
        sender=Party(**data["sender"]),
        addressee=Party(**data["addressee"]),
        categories=tuple(data["categories"]),
        subjects=tuple(data["subjects"]),
        annexes=tuple(Annex(**a) for a in data["annexes"]),
    )
    return LetterContent(**values)


class LetterRenderer(Protocol):
    """Lays out letters, and through the same engine every other PDF casebridge makes."""

    @property
    def unavailable(self) -> LetterUnavailable | None:
        """Why this node cannot lay out PDFs, once a layout attempt found out; None while it can (or may)."""
        ...

    def warm_up(self) -> None:
        """Prepare the engine (blocking; call in a thread) so the first letter does not pay for it."""
        ...

    async def render(self, content: LetterContent) -> bytes:
        """Lay the letter out off the event loop; never called with a database transaction open."""
        ...

    async def typeset(self, root: Path, template: str, data: Mapping[str, Any], created: dt.datetime) -> bytes:
        """Lay any other PDF out the same way as a letter (a subject access report, a plan summary): `template` in
        the folder `root`, printing `data` (JSON), with `created` as its creation time."""
        ...


# -- what a letter prints ---------------------------------------------------------------------------------------------

# The subject's fields in the order the enclosure lists them; the projection decides which of them are there.
_SUBJECT_FIELDS: Final = (
    "role",
    "full_name",
    "birth_date",
    "identifiers",
    "address",
    "phone",
    "email",
    "education",
    "health",
)
_NEEDS_PARTS: Final = ("client", "carers", "community")


def _format_date(value: dt.date | str | None, language: str) -> str:
    if value is None or value == "":
        return ""
    return format_day(dt.date.fromisoformat(value) if isinstance(value, str) else value, language)


def _fact(label: str, text: str, style: str = "plain", note: str | None = None) -> dict[str, Any]:
    return {"label": label, "text": text, "style": style, "note": note}


def _facts(content: LetterContent, t: Mapping[str, Any]) -> list[dict[str, Any]]:
    lang, plan, basis = content.language, content.plan or {}, content.legal_basis
    facts = [
        _fact(t["problem"], content.problem, "prose"),
        _fact(t["requested_service"], content.requested_service, "prose"),
    ]
    if plan.get("task_title"):
        facts.append(_fact(t["plan_task"], plan["task_title"], "prose"))
    if plan.get("expected_result"):
        facts.append(_fact(t["plan_result"], plan["expected_result"], "prose"))
    basis_text = t["basis"][basis["type"]] + (f" ({basis['reference']})" if basis.get("reference") else "")
    justification = f"{t['justification']}: {basis['justification']}" if basis.get("justification") else None
    facts += [
        _fact(t["urgency"], t["urgency_names"][content.urgency]),
        _fact(t["respond_by"], format_day(content.respond_by, lang)),
        _fact(t["complete_by"], format_day(content.complete_by, lang)),
        _fact(t["purpose"], content.purpose),
        _fact(t["legal_basis"], basis_text, note=justification),
        _fact(t["categories"], "; ".join(t["category_names"].get(c, c) for c in content.categories)),
        _fact(t["case_ref"], content.case_ref),
        _fact(t["referral_id"], str(content.referral_id), "mono"),
    ]
    return facts


def _subject_fields(subject: Mapping[str, Any], t: Mapping[str, Any], language: str) -> list[tuple[str, str]]:
    fields = []
    for name in _SUBJECT_FIELDS:
        value = subject.get(name)
        if not value:
            continue
        if name == "role":
            text = t["roles"].get(value, value)
        elif name == "birth_date":
            text = _format_date(value, language)
        elif isinstance(value, Mapping):
            text = "; ".join(f"{t['fields'].get(key, key)} {part}" for key, part in value.items() if part)
        else:
            text = str(value)
        fields.append((t["fields"][name], text))
    return fields


def _enclosure(content: LetterContent, t: Mapping[str, Any], index: int, annex: Annex) -> dict[str, Any]:
    enclosure: dict[str, Any] = {"heading": f"{t['annex']} {index}. {t['annex_names'][annex.key]}"}
    if annex.key == "subjects":
        rows = [
            {"ref": str(s.get("ref", "")), "fields": _subject_fields(s, t, content.language)} for s in content.subjects
        ]
        return {**enclosure, "kind": "subjects", "columns": [t["subject_ref"], t["subject_data"]], "rows": rows}
    if annex.key == "needs":
        needs = content.needs or {}
        facts = [_fact(t["needs_parts"][part], needs[part], "prose") for part in _NEEDS_PARTS if needs.get(part)]
        return {**enclosure, "kind": "facts", "facts": facts}
    return {**enclosure, "kind": "prose", "text": content.summary or ""}


def _party_lines(party: Party, t: Mapping[str, Any]) -> list[str]:
    lines = [value for value in (party.region, party.address) if value]
    lines += [f"{t[name]} {value}" for name in ("phone", "email", "website") if (value := getattr(party, name))]
    return lines


def letter_document(content: LetterContent) -> PdfDocument:
    """The letter as its kind's template prints it: every string ready, in the letter's language."""
    if content.language not in LANGUAGES or content.kind not in KINDS:
        raise ValueError("no template for this language and kind")
    lang, t = content.language, LABELS[content.language]
    annexes = [
        f"{t['annex_names'][a.key]}" + (f" ({a.count} {t['count_unit']})" if a.key == "subjects" else "") + "."
        for a in content.annexes
    ]
    role = content.signer_role
    signer = content.signer_name
    if role:
        signer = f"{t['signer_roles'].get(role, role).capitalize()} — {signer}"
    data = {
        "lang": lang,
        "case_ref": content.case_ref,
        "sender_name": content.sender.name,
        "registration": {
            "label": t["number"],
            "number": content.registration_number,
            "dated": t["dated"],
            "date": _format_date(content.date, lang),
        },
        "sender": {"name": content.sender.name, "lines": _party_lines(content.sender, t)},
        "addressee": {
            "label": t["to"],
            "name": content.addressee.name,
            "lines": [v for v in (content.addressee.region, content.addressee.address) if v],
        },
        "urgency": None if content.urgency == "routine" else t["urgency_names"][content.urgency],
        "facts": _facts(content, t),
        "annexes": {"label": t["annexes"], "items": annexes, "none": t["no_annexes"]},
        "signature": {
            "label": t["signer"],
            "signer": signer,
            "organisation": content.sender.name,
            "note": t["signed_note"],
        },
        "enclosures": [_enclosure(content, t, i, a) for i, a in enumerate(content.annexes, start=1)],
    }
    # The letter's date as its creation time: laid out again (a retry after a crash), a letter is the same PDF.
    created = dt.datetime.combine(content.date, dt.time(), tzinfo=dt.UTC)
    return PdfDocument(TEMPLATES, f"{lang}/{content.kind}.typ", data, created)


# -- the renderer: one engine and one pool of processes for every PDF --------------------------------------------------


def _follow_parent() -> None:
    """Run first in every pool process: end it when the gateway process is gone, even by SIGKILL, which leaves no
    one to shut the pool down (the process would otherwise wait on its task queue for ever)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch(sentinel: int) -> None:
        multiprocessing.connection.wait([sentinel])  # readable once the parent has exited
        os._exit(0)

    threading.Thread(target=watch, args=(parent.sentinel,), name="follow-parent", daemon=True).start()


def _warm() -> None:
    """Make this process's compilers and lay a sample of each template out, so fonts and templates are parsed."""
    for document in _samples():
        typeset(document)


def _samples() -> list[PdfDocument]:
    """A letter in each language touching every face and element the templates use (bold, monospace, the table)."""
    deadline = dt.date(2026, 1, 1)
    party = Party(name="Жя", region="Жя", address="Жя", phone="1", email="a@b", website="c")
    sample = LetterContent(
        language="ru",
        kind="petition",
        registration_number="Ж-2026/0001",
        date=deadline,
        sender=party,
        addressee=party,
        referral_id=uuid.UUID(int=0),
        case_ref="Жя",
        purpose="Жя",
        problem="Жя",
        requested_service="Жя",
        urgency="urgent",
        respond_by=deadline,
        complete_by=deadline,
        legal_basis={"type": "statutory", "reference": "Жя", "justification": "Жя"},
        categories=("identity",),
        signer_name="Жя",
        signer_role="specialist",
        subjects=({"ref": "Жя", "role": "child", "full_name": "Жя"},),
        annexes=(Annex("subjects", 1),),
    )
    return [letter_document(sample), letter_document(dataclasses.replace(sample, language="en"))]


class TypstRenderer:
    """Letters and every other PDF laid out by typst (exchange.letters.typesetting), as PDF/A-2b.

    ``processes`` > 0: layouts run in a pool of that many worker processes (spawned on first use; default one per
    CPU core), each keeping its own compilers warm, so the gateway's process, whose event loop serves every request,
    never spends its interpreter on a layout, and the letters of a batch are laid out side by side. 0: in a thread
    of the calling process, one at a time, for tools and tests.
    """

    def __init__(self, *, processes: int | None = None) -> None:
        processes = (os.cpu_count() or 1) if processes is None else processes
        if processes < 0:
            raise ValueError("processes must not be negative")
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._failure: LetterUnavailable | None = None

    @property
    def processes(self) -> int:
        return self._processes

    @property
    def unavailable(self) -> LetterUnavailable | None:
        return self._failure

    def warm_up(self) -> None:
        """Start every process of the pool and warm its compilers (or this process's, without a pool).

        Raises LetterUnavailable without the engine. Any other failure only costs the speed of the first layouts,
        which meet it again and are retried, so it is logged rather than raised.
        """
        try:
            if not self._processes:
                _warm()
                return
            pool = self._executor()
            # Submitted together, before any process is up: each one finds no idle process and spawns another.
            for warming in [pool.submit(_warm) for _ in range(self._processes)]:
                warming.result()
        except ImportError as exc:
            raise self._missing() from exc
        except (LayoutFailed, BrokenProcessPool, OSError) as exc:
            if isinstance(exc, BrokenProcessPool):
                self._pool = None
            log.warning("the PDF engine could not be warmed up (%s)", type(exc).__name__)

    def close(self) -> None:
        """Stop the worker processes (a layout in progress is abandoned; its letter stays pending)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the gateway runs threads (the database driver's among them), which fork would copy
            # in whatever state they are in.
            self._pool = ProcessPoolExecutor(
                self._processes, mp_context=multiprocessing.get_context("spawn"), initializer=_follow_parent
            )
        return self._pool

    def _missing(self) -> LetterUnavailable:
        self._failure = LetterUnavailable(
            "PDF documents cannot be made on this server: its PDF engine is not installed. Nothing was sent."
        )
        return self._failure

    async def typeset(self, root: Path, template: str, data: Mapping[str, Any], created: dt.datetime) -> bytes:
        return await self._lay_out(PdfDocument(root, template, data, created))

    async def _lay_out(self, document: PdfDocument) -> bytes:
        try:
            if not self._processes:
                return await asyncio.to_thread(typeset, document)
            return await asyncio.get_running_loop().run_in_executor(self._executor(), typeset, document)
        except ImportError as exc:
            raise self._missing() from exc
        except BrokenProcessPool:
            self._pool = None  # a worker process died: the next layout gets a fresh pool, this one is retried
            raise

    async def render(self, content: LetterContent) -> bytes:
        pdf = await self._lay_out(letter_document(content))
        if len(pdf) > MAX_LETTER_BYTES:
            raise LetterUnavailable("The letter is too long to send; shorten the referral's text.")
        return pdf
