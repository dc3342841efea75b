"""Laying a letter out: the content of one letter, its HTML templates (per kind, Russian and English) and the PDF."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import multiprocessing
import threading
import uuid
import zoneinfo
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import jinja2

from exchange.letters.labels import LABELS
from tenants.errors import CasebridgeError

TEMPLATES: Final = Path(__file__).parent / "templates"
LANGUAGES: Final = ("ru", "en")
KINDS: Final = ("referral", "petition", "document_request", "information_letter", "plan_task")
# A letter is a few pages of text; anything near this means something went wrong. It travels inside the envelope,
# whose body is limited to 4 MiB (exchange/envelopes.py), base64-encoded.
MAX_LETTER_BYTES: Final = 1024 * 1024


class LetterUnavailable(CasebridgeError):
    """This node cannot lay out letters (the PDF engine or its system libraries are missing)."""


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
    respond_by: dt.datetime  # local time of the letter's zone
    complete_by: dt.datetime
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
    data["date"] = content.date.isoformat()
    zone = content.respond_by.tzinfo
    data["zone"] = zone.key if isinstance(zone, zoneinfo.ZoneInfo) else "UTC"
    data["respond_by"] = content.respond_by.astimezone(dt.UTC).isoformat()
    data["complete_by"] = content.complete_by.astimezone(dt.UTC).isoformat()
    return data


def content_from_json(data: Mapping[str, Any]) -> LetterContent:
    """The inverse of `content_to_json`; deadlines come back in the zone they were written in."""
    zone = zoneinfo.ZoneInfo(str(data["zone"]))
    values = {k: v for k, v in data.items() if k != "zone"}
    values.update(
        referral_id=uuid.UUID(str(data["referral_id"])),
        date=dt.date.fromisoformat(str(data["date"])),
        respond_by=dt.datetime.fromisoformat(str(data["respond_by"])).astimezone(zone),
        complete_by=dt.datetime.fromisoformat(str(data["complete_by"])).astimezone(zone),
        sender=Party(**data["sender"]),
        addressee=Party(**data["addressee"]),
        categories=tuple(data["categories"]),
        subjects=tuple(data["subjects"]),
        annexes=tuple(Annex(**a) for a in data["annexes"]),
    )
    return LetterContent(**values)


class LetterRenderer(Protocol):
    """Turns letter content into PDF bytes; `zone` is the local time of the letters' dates and deadlines."""

    @property
    def zone(self) -> zoneinfo.ZoneInfo: ...

    @property
    def unavailable(self) -> LetterUnavailable | None:
        """Why this node cannot lay out letters, once a layout attempt found out; None while it can (or may)."""
        ...

    def warm_up(self) -> None:
        """Prepare the engine (blocking; call in a thread) so the first letter does not pay for it."""
        ...

    async def render(self, content: LetterContent) -> bytes:
        """Lay the letter out in a worker thread; never called with a database transaction open."""
        ...


def _format_datetime(value: dt.datetime, language: str) -> str:
    zone = value.strftime("%Z")
    if language == "ru":
        return f"{value:%d.%m.%Y %H:%M} ({zone})"
    return f"{value:%d %B %Y, %H:%M} ({zone})"


def _format_date(value: dt.date | str | None, language: str) -> str:
    if value is None or value == "":
        return ""
    parsed = dt.date.fromisoformat(value) if isinstance(value, str) else value
    return f"{parsed:%d.%m.%Y}" if language == "ru" else f"{parsed:%d %B %Y}"


def template_environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = _format_datetime
    environment.filters["day"] = _format_date
    return environment


def letter_html(environment: jinja2.Environment, content: LetterContent) -> str:
    if content.language not in LANGUAGES or content.kind not in KINDS:
        raise ValueError("no template for this language and kind")
    template = environment.get_template(f"{content.language}/{content.kind}.html")
    return template.render(letter=content, t=LABELS[content.language])


# WeasyPrint's font configuration and the parsed stylesheet are made once per process and kept: building them
# costs far more than laying out a letter. Layout is CPU-bound Python run in a thread (asyncio.to_thread) by the
# letter worker, off the event loop and outside any database transaction; the layout lock never runs two layouts at
# once (fontconfig and WeasyPrint's font cache are not safe to share between threads).
_ENGINE_LOCK = threading.Lock()
_LAYOUT_LOCK = threading.Lock()
_engine: tuple[Any, Any, Any] | None = None
_engine_failure: LetterUnavailable | None = None


def _prepared_engine() -> tuple[Any, Any, Any]:
    global _engine, _engine_failure
    with _ENGINE_LOCK:
        if _engine is None:
            try:
                # Imported here, not at start-up: without Pango on the system the rest of casebridge still runs.
                from weasyprint import CSS, HTML
                from weasyprint.text.fonts import FontConfiguration
            except (ImportError, OSError) as exc:
                _engine_failure = LetterUnavailable(
                    "Letters cannot be produced on this server: the PDF engine is not installed. Nothing was sent."
                )
                raise _engine_failure from exc
            fonts = FontConfiguration()
            stylesheet = CSS(filename=str(TEMPLATES / "letter.css"), font_config=fonts)
            _engine = (HTML, stylesheet, fonts)
        return _engine


# Letters laid out in worker processes: one renderer per zone, made on first use in each process.
_process_renderers: dict[str, WeasyPrintRenderer] = {}


def _render_in_process(zone: str, content: LetterContent) -> bytes:
    """The layout in a worker process (a module-level function: the pool pickles it by name)."""
    renderer = _process_renderers.get(zone)
    if renderer is None:
        renderer = _process_renderers[zone] = WeasyPrintRenderer(zone=zoneinfo.ZoneInfo(zone))
    return renderer.render_now(content)


def _warm_in_process() -> None:
    _prepared_engine()


class WeasyPrintRenderer:
    """Letters laid out by WeasyPrint (HTML and CSS to PDF; fonts through Pango and fontconfig).

    ``processes`` > 0: layouts run in that many worker processes (spawned on first use), so the gateway's own
    process, whose event loop serves every request, never spends its interpreter on a layout. 0: in a thread of the
    calling process, for tools and tests.
    """

    def __init__(self, *, zone: zoneinfo.ZoneInfo, processes: int = 0) -> None:
        if processes < 0:
            raise ValueError("processes must not be negative")
        self._zone = zone
        self._environment = template_environment()
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._failure: LetterUnavailable | None = None

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return self._zone

    @property
    def unavailable(self) -> LetterUnavailable | None:
        return self._failure or _engine_failure

    def warm_up(self) -> None:
        if not self._processes:
            _prepared_engine()
            return
        try:
            self._executor().submit(_warm_in_process).result()
        except LetterUnavailable as exc:
            self._failure = exc
            raise

    def close(self) -> None:
        """Stop the worker processes (a layout in progress is abandoned; its letter stays pending)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the gateway runs threads (the database driver's among them), which fork would copy
            # in whatever state they are in.
            self._pool = ProcessPoolExecutor(self._processes, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def render_now(self, content: LetterContent) -> bytes:
        """Lay the letter out on the calling thread."""
        html = letter_html(self._environment, content)
        html_class, stylesheet, fonts = _prepared_engine()
        with _LAYOUT_LOCK:
            pdf: bytes = html_class(string=html, base_url=str(TEMPLATES)).write_pdf(
                stylesheets=[stylesheet], font_config=fonts
            )
        if len(pdf) > MAX_LETTER_BYTES:
            raise LetterUnavailable("The letter is too long to send; shorten the referral's text.")
        return pdf

    async def render(self, content: LetterContent) -> bytes:
        if not self._processes:
            return await asyncio.to_thread(self.render_now, content)
        try:
            pdf: bytes = await asyncio.get_running_loop().run_in_executor(
                self._executor(), _render_in_process, self._zone.key, content
            )
        except BrokenProcessPool:
            self._pool = None  # a worker process died: the next letter gets a fresh pool, this one is retried
            raise
        return pdf
