"""Russian and English for the staff pages: gettext catalogues read from .po files, the request's language, formats.

Every `.po` file of a language under `locale/<lang>/LC_MESSAGES/` is read at start-up and merged into one catalogue,
so each area of the interface may keep its own file (`messages.po`, `admin.po`, ...) without a compile step.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import jinja2
from babel import Locale
from babel import numbers as babel_numbers
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from jinja2 import pass_context

from gateway.auth.middleware import STAFF_STATE, StaffIdentity
from tenants.calendar import DEFAULT_TIME_ZONE, FIRST_DAY, LAST_DAY, format_day, format_moment, time_zone

LOCALE_DIR: Final = Path(__file__).parent / "locale"
LANGUAGES: Final = ("ru", "en")
DEFAULT_LANGUAGE: Final = "ru"
# Shown in the switcher in each language's own name, so a reader finds theirs whatever the page is in.
LANGUAGE_NAMES: Final = {"ru": "Русский", "en": "English"}
LANGUAGE_COOKIE: Final = "cb_lang"
_STATE_KEY: Final = "locale"


def N_(message: str) -> str:  # noqa: N802 - the conventional gettext marker name, which extraction looks for
    """Mark a string for extraction where it is defined; it is translated where it is shown."""
    return message


@functools.cache
def catalogues(locale_dir: Path = LOCALE_DIR) -> Mapping[str, NullTranslations]:
    """One merged catalogue per language; fuzzy entries are left out, so they fall back to English."""
    merged: dict[str, NullTranslations] = {}
    for language in LANGUAGES:
        combined: NullTranslations = NullTranslations()
        for path in sorted((locale_dir / language / "LC_MESSAGES").glob("*.po")):
            with path.open("rb") as handle:
                catalog = read_po(handle, locale=language)
            buffer = io.BytesIO()
            write_mo(buffer, catalog, use_fuzzy=False)
            buffer.seek(0)
            part = Translations(buffer, domain=path.stem)
            if isinstance(combined, Translations):
                combined.merge(part)
            else:
                combined = part
        merged[language] = combined
    return merged


def translations(language: str) -> NullTranslations:
    return catalogues().get(language) or NullTranslations()


def negotiate(accept_language: str | None) -> str | None:
    """The best of our languages for an Accept-Language header (RFC 9110 §12.5.4), or None if it names none."""
    if not accept_language:
        return None
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, index, primary))
    return min(ranked)[2] if ranked else None


def choose_language(*, saved: str | None, cookie: str | None, accept_language: str | None) -> str:
    """The user's saved setting, else the language picked before signing in, else the browser's, else Russian."""
    for candidate in (saved, cookie):
        if candidate in LANGUAGES:
            return candidate
    return negotiate(accept_language) or DEFAULT_LANGUAGE


def language_of(request: Any) -> str:
    """The language of this request's pages, chosen once per request and kept in its scope state."""
    state = request.scope.setdefault("state", {})
    language = state.get(_STATE_KEY)
    if language not in LANGUAGES:
        staff = state.get(STAFF_STATE)
        language = choose_language(
            saved=staff.language if isinstance(staff, StaffIdentity) else None,
            cookie=request.cookies.get(LANGUAGE_COOKIE),
            accept_language=request.headers.get("accept-language"),
        )
        state[_STATE_KEY] = language
    return str(language)


def use_language(request: Any, language: str) -> None:
    """The rest of this request speaks `language` (the switcher's confirmation is shown in the language chosen)."""
    if language in LANGUAGES:
        request.scope.setdefault("state", {})[_STATE_KEY] = language


def gettext_for(language: str) -> Callable[..., str]:
    """A `_` for Python code: `_("Saved %(name)s", name=...)` formats after translating, like the templates' `_`."""
    catalogue = translations(language)

    def gettext(message: str, **variables: Any) -> str:
        text = catalogue.gettext(message)
        return text % variables if variables else text

    return gettext


# -- templates ---------------------------------------------------------------------------------------------------


def _context_language(context: Any) -> str:
    request = context.get("request")
    return language_of(request) if request is not None else DEFAULT_LANGUAGE


@pass_context
def _gettext(context: Any, message: str) -> str:
    return translations(_context_language(context)).gettext(message)


@pass_context
def _ngettext(context: Any, singular: str, plural: str, count: int) -> str:
    return translations(_context_language(context)).ngettext(singular, plural, count)


def agency_zone(request: Any) -> zoneinfo.ZoneInfo:
    """The signed-in person's agency's time zone (read with the session); a public page's is the default one."""
    staff = request.scope.get("state", {}).get(STAFF_STATE) if request is not None else None
    return time_zone(staff.time_zone if isinstance(staff, StaffIdentity) else DEFAULT_TIME_ZONE)


def _timezone(context: Any) -> dt.tzinfo:
    return agency_zone(context.get("request"))


def _in_zone(value: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """`value` in the agency's zone; a time stored before the calendar was bounded (tenants/calendar.py) may have
    no local time there (the very ends of year 1 and 9999): it is then shown as it is, in UTC, rather than failing."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    try:
        return aware.astimezone(zone)
    except (OverflowError, ValueError):
        return aware


@pass_context
def format_date(context: Any, value: dt.date | dt.datetime | str | None) -> str:
    """A day as every page writes it (tenants.calendar.format_day); an instant as its day in the agency's zone."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):  # a birth date as a partner's envelope wrote it: shown as it is unless it is a day
        try:
            day = dt.date.fromisoformat(value)
        except ValueError:
            return value
        return format_day(day, _context_language(context))
    if isinstance(value, dt.datetime):
        value = _in_zone(value, _timezone(context)).date()
    return format_day(value, _context_language(context))


@pass_context
def format_datetime(context: Any, value: dt.datetime | None) -> str:
    """An instant as its day and time in the agency's zone (tenants.calendar.format_moment)."""
    if value is None:
        return ""
    local = _in_zone(value, _timezone(context))  # in UTC when the zone has no local time for it
    return format_moment(local, local.tzinfo or dt.UTC, _context_language(context))


@pass_context
def format_decimal(context: Any, value: float | int | None, format: str | None = None) -> str:
    if value is None:
        return ""
    return babel_numbers.format_decimal(value, format=format, locale=_context_language(context))


@pass_context
def language_name(context: Any, language: str) -> str:
    return Locale.parse(language).get_display_name(_context_language(context)) or language


def configure_templates(engine: Any) -> None:
    """TemplateConfig's engine callback: gettext in every template, and Babel's formats as filters."""
    environment: jinja2.Environment = engine.engine
    environment.add_extension("jinja2.ext.i18n")
    # `{% trans %}` blocks are extracted with their whitespace collapsed, so templates may wrap text freely.
    environment.policies["ext.i18n.trimmed"] = True
    environment.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]  # added by the i18n extension
    environment.filters.update(
        format_date=format_date,
        format_datetime=format_datetime,
        format_decimal=format_decimal,
    )
    # Date fields offer only the days casebridge accepts (tenants/calendar.py): `min` and `max` of <input type=date>.
    calendar = {"min": FIRST_DAY.isoformat(), "max": LAST_DAY.isoformat()}
    environment.globals.update(LANGUAGES=LANGUAGES, LANGUAGE_NAMES=LANGUAGE_NAMES, CALENDAR=calendar)
