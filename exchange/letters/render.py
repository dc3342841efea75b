"""Laying a letter out: the content of one letter, its HTML templates (per kind, Russian and English) and the PDF."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
import zoneinfo
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
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


class LetterRenderer(Protocol):
    """Turns letter content into PDF bytes; `zone` is the local time of the letters' dates and deadlines."""

    @property
    def zone(self) -> zoneinfo.ZoneInfo: ...

    async def render(self, content: LetterContent) -> bytes: ...


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
# costs far more than laying out a letter. Layout is CPU-bound Python; one worker thread keeps it off the event loop
# and never runs two layouts at once (fontconfig and WeasyPrint's font cache are not safe to share between them).
_WORKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="casebridge-letters")
_ENGINE_LOCK = threading.Lock()
_LAYOUT_LOCK = threading.Lock()
_engine: tuple[Any, Any, Any] | None = None


def _prepared_engine() -> tuple[Any, Any, Any]:
    global _engine
    with _ENGINE_LOCK:
        if _engine is None:
            try:
                # Imported here, not at start-up: without Pango on the system the rest of casebridge still runs.
                from weasyprint import CSS, HTML
                from weasyprint.text.fonts import FontConfiguration
            except (ImportError, OSError) as exc:
                raise LetterUnavailable(
                    "Letters cannot be produced on this server: the PDF engine is not installed. Nothing was sent."
                ) from exc
            fonts = FontConfiguration()
            stylesheet = CSS(filename=str(TEMPLATES / "letter.css"), font_config=fonts)
            _engine = (HTML, stylesheet, fonts)
        return _engine


class WeasyPrintRenderer:
    """Letters laid out by WeasyPrint (HTML and CSS to PDF; fonts through Pango and fontconfig)."""

    def __init__(self, *, zone: zoneinfo.ZoneInfo) -> None:
        self._zone = zone
        self._environment = template_environment()

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return self._zone

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
        return await asyncio.get_running_loop().run_in_executor(_WORKER, self.render_now, content)
