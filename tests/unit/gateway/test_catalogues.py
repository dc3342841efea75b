"""Every string of the staff pages is in the catalogues, and the Russian catalogue translates every one of them."""

from __future__ import annotations

import re

import pytest
from babel.messages.catalog import Catalog

from gateway.web import i18n
from gateway.web.messages import catalogue_paths, extract, read_catalogue


def _catalogues(language: str) -> list[Catalog]:
    paths = catalogue_paths(language)
    assert paths, f"no catalogue for {language}"
    return [read_catalogue(path, language) for path in paths]


def _key(message_id: str | tuple[str, ...] | list[str]) -> str | tuple[str, ...]:
    return message_id if isinstance(message_id, str) else tuple(message_id)


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_every_string_in_the_sources_is_in_the_catalogues(language: str) -> None:
    extracted = extract()
    assert len(extracted) > 100  # the extraction found the pages at all
    known = {_key(m.id) for catalog in _catalogues(language) for m in catalog if m.id}
    missing = sorted(str(k) for k in extracted if k not in known)
    assert missing == [], f"run `make messages` and translate: {missing[:20]}"


def test_the_russian_catalogue_translates_everything() -> None:
    problems = []
    for catalog in _catalogues("ru"):
        for message in catalog:
            if not message.id:
                continue
            strings = message.string if isinstance(message.string, tuple | list) else [message.string]
            if message.fuzzy or not all(s.strip() for s in strings):
                problems.append(str(message.id))
    assert problems == []


# Placeholders that stand for a name as it is registered (an organisation, a person): Russian would decline a name after
# a preposition («в Комиссию»), which a registered name cannot be made to do, so a sentence gives it in the nominative
# («Получатель: Комиссия …») instead.
_NAME_PLACEHOLDER = re.compile(
    r"\b(?:в|во|к|ко|от|для|из|у|с|со|о|об|по|на|за|при|до|перед)\s+«?%\((?:agency|name|organisation|partner|recipient|sender|tenant)\)s",
    re.IGNORECASE,
)


def test_russian_sentences_leave_registered_names_in_the_nominative() -> None:
    declined = [
        str(message.string)
        for catalog in _catalogues("ru")
        for message in catalog
        if message.id and _NAME_PLACEHOLDER.search(str(message.string))
    ]
    assert declined == []


def test_catalogues_of_a_language_are_merged() -> None:
    russian = i18n.translations("ru")
    assert russian.gettext("Sign in") == "Войти"
    assert russian.gettext("Dashboard") != "Dashboard"
    assert i18n.translations("en").gettext("Sign in") == "Sign in"


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, None),
        ("", None),
        ("en-GB,en;q=0.9", "en"),
        ("de-DE, ru;q=0.5, en;q=0.4", "ru"),
        ("fr, de", None),
        ("ru;q=0, en;q=0.1", "en"),
        ("en;q=garbage, ru", "ru"),
    ],
)
def test_accept_language_is_negotiated(header: str | None, language: str | None) -> None:
    assert i18n.negotiate(header) == language


def test_the_saved_setting_wins_then_the_cookie_then_the_browser_then_russian() -> None:
    assert i18n.choose_language(saved="en", cookie="ru", accept_language="ru") == "en"
    assert i18n.choose_language(saved=None, cookie="en", accept_language="ru") == "en"
    assert i18n.choose_language(saved=None, cookie="xx", accept_language="en-US") == "en"
    assert i18n.choose_language(saved=None, cookie=None, accept_language="de") == "ru"


def test_russian_plurals_have_three_forms() -> None:
    russian = i18n.translations("ru")
    forms = {russian.ngettext("%(num)d referral", "%(num)d referrals", n) % {"num": n} for n in (1, 2, 5)}
    assert len(forms) == 3, forms
