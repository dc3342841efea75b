"""Find every translatable string of the staff pages and keep the .po catalogues in step with them.

`python -m gateway.web.messages` (or `make messages`) adds new strings to the catalogues with an empty translation
and drops strings no page uses any more; translations already made are kept. Strings of the DPO and
administration pages (files named `dpo*` or `admin*`) go to `admin.po`, of the reports page to `reports.po`, of the
plan pages (`plan*`) to `plans.po`, all others to `messages.po`.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir, extract_from_file
from babel.messages.pofile import read_po, write_po

from gateway.web.i18n import LANGUAGES, LOCALE_DIR

WEB_DIR: Final = Path(__file__).parent
METHOD_MAP: Final = [("templates/**.html", "jinja2.ext:babel_extract"), ("**.py", "python")]
# Same whitespace handling as the running templates (see i18n.configure_templates).
OPTIONS_MAP: Final = {"templates/**.html": {"trimmed": "true", "extensions": "jinja2.ext.i18n"}}
KEYWORDS: Final = {**DEFAULT_KEYWORDS, "N_": None}
DEFAULT_DOMAIN: Final = "messages"
# Sources outside the web folder whose sentences the pages show too (validation failures: the API's English words).
SHARED_SOURCES: Final = (WEB_DIR.parent / "validation.py",)
# Catalogue of the strings in files whose name starts with a prefix here.
DOMAINS_BY_PREFIX: Final = {"dpo": "admin", "admin": "admin", "reports": "reports", "plan": "plans"}


MessageId = str | tuple[str, ...]


@dataclass
class Extracted:
    """One string as it appears in the sources: the catalogue it belongs to and where it is used."""

    domain: str
    locations: list[tuple[str, int]] = field(default_factory=list)


def domain_of(filename: str) -> str:
    stem = Path(filename).name
    for prefix, domain in DOMAINS_BY_PREFIX.items():
        if stem.startswith(prefix):
            return domain
    return DEFAULT_DOMAIN


def extract(web_dir: Path = WEB_DIR) -> dict[MessageId, Extracted]:
    """Every string marked for translation in the templates and Python files of `web_dir`."""
    found: dict[MessageId, Extracted] = {}
    for filename, lineno, message, _comments, _context in _extract(web_dir):
        key: MessageId = tuple(message) if isinstance(message, tuple | list) else message
        if isinstance(key, tuple):
            key = tuple(part for part in key if part)
            if len(key) == 1:
                key = key[0]
        if not key:
            continue
        entry = found.setdefault(key, Extracted(domain=domain_of(filename)))
        if domain_of(filename) == DEFAULT_DOMAIN:
            entry.domain = DEFAULT_DOMAIN  # shared by both areas: the general catalogue holds it
        entry.locations.append((filename, lineno))
    return found


def _extract(web_dir: Path) -> Iterator[tuple[str, int, str | tuple[str, ...], list[str], str | None]]:
    yield from extract_from_dir(
        web_dir, method_map=METHOD_MAP, options_map=OPTIONS_MAP, keywords=KEYWORDS, strip_comment_tags=True
    )
    for source in SHARED_SOURCES:
        for lineno, message, comments, context in extract_from_file(
            "python", source, keywords=KEYWORDS, strip_comment_tags=True
        ):
            yield f"../{source.name}", lineno, message, comments, context


def catalogue_paths(language: str, locale_dir: Path = LOCALE_DIR) -> list[Path]:
    return sorted((locale_dir / language / "LC_MESSAGES").glob("*.po"))


def read_catalogue(path: Path, language: str) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=language)


def update(locale_dir: Path = LOCALE_DIR, web_dir: Path = WEB_DIR) -> dict[str, int]:
    """Rewrite each language's catalogues from the sources; returns how many strings still lack a translation."""
    extracted = extract(web_dir)
    untranslated: dict[str, int] = {}
    for language in LANGUAGES:
        known: dict[MessageId, Any] = {}
        for path in catalogue_paths(language, locale_dir):
            for message in read_catalogue(path, language):
                if message.id and message.string and not message.fuzzy:
                    known[_key(message.id)] = message.string
        by_domain: dict[str, Catalog] = {}
        for key in sorted(extracted, key=lambda k: k if isinstance(k, str) else k[0]):
            entry = extracted[key]
            catalog = by_domain.setdefault(entry.domain, _new_catalog(language, entry.domain))
            message_id = key if isinstance(key, str) else (key[0], key[1])
            string = known.get(key, "" if isinstance(key, str) else ("",) * _plural_count(catalog))
            catalog.add(message_id, string, locations=[(Path(f).as_posix(), n) for f, n in entry.locations])
        target_dir = locale_dir / language / "LC_MESSAGES"
        target_dir.mkdir(parents=True, exist_ok=True)
        for domain, catalog in by_domain.items():
            with (target_dir / f"{domain}.po").open("wb") as handle:
                write_po(handle, catalog, width=120, sort_output=True, include_lineno=False)
        untranslated[language] = sum(1 for key in extracted if key not in known)
    return untranslated


def _key(message_id: str | tuple[str, ...] | list[str]) -> MessageId:
    return message_id if isinstance(message_id, str) else tuple(message_id)


def _plural_count(catalog: Catalog) -> int:
    return int(catalog.num_plurals)


def _new_catalog(language: str, domain: str) -> Catalog:
    # Fixed header dates keep the files free of churn: git already records when each string changed.
    return Catalog(
        locale=language,
        domain=domain,
        header_comment=f"# casebridge staff pages: {domain} ({language}). Update with `make messages`.",
        project="casebridge",
        version="1",
        msgid_bugs_address="",
        copyright_holder="",
        creation_date=_FIXED_DATE,
        revision_date=_FIXED_DATE,
        last_translator="casebridge",
        language_team=language,
        fuzzy=False,
    )


_FIXED_DATE: Final = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def main() -> int:
    missing = update()
    for language, count in missing.items():
        print(f"{language}: {count} string(s) without a translation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
