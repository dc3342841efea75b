"""The DPO console's words for the audit trail: a sentence in Russian and English for every action, each action in
exactly one group of the search filter, and events in runs of the agency's days."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections import Counter

import pytest

from audit.events import Action
from gateway.web import dpo_words, i18n
from gateway.web.messages import catalogue_paths, read_catalogue


def test_every_action_has_one_sentence_in_one_group() -> None:
    grouped = Counter(action for _, group in dpo_words.ACTION_GROUPS for action in group)
    assert sorted(set(Action) - set(grouped)) == [], "add a sentence to ACTION_GROUPS in gateway/web/dpo_words.py"
    assert [a for a, n in grouped.items() if n > 1] == []
    assert set(dpo_words.SENTENCES) == {a.value for a in Action}
    # Two actions with one sentence could not be told apart in the filter or in a row of the results.
    assert [s for s, n in Counter(dpo_words.SENTENCES.values()).items() if n > 1] == []
    assert [code for _, choices in dpo_words.action_filter() for code, _ in choices] == [
        a.value for _, group in dpo_words.ACTION_GROUPS for a in group
    ]


@pytest.mark.parametrize("language", i18n.LANGUAGES)
def test_every_sentence_and_group_is_in_the_language_catalogue(language: str) -> None:
    translated = {
        m.id: m.string
        for path in catalogue_paths(language)
        for m in read_catalogue(path, language)
        if isinstance(m.id, str) and m.string and not m.fuzzy
    }
    texts = [*dpo_words.SENTENCES.values(), *(label for label, _ in dpo_words.ACTION_GROUPS)]
    assert [t for t in texts if t not in translated] == []
    if language == "ru":
        # A Russian page never shows an English sentence, nor a code.
        catalogue = i18n.translations("ru")
        assert [t for t in texts if catalogue.gettext(t) == t or ":" in catalogue.gettext(t)] == []


def test_events_run_by_the_agency_s_day() -> None:
    moscow = zoneinfo.ZoneInfo("Europe/Moscow")
    times = ["2027-01-01T09:00:00Z", "2026-12-31T21:30:00Z", "2026-12-31T20:59:00Z", "2026-12-30T08:00:00Z"]
    events = [dpo_words.shown({"id": str(n), "time": t}, moscow) for n, t in enumerate(times)]
    days = dpo_words.by_day(events)
    assert [(d.day, [e["id"] for e in d.events]) for d in days] == [
        (dt.date(2027, 1, 1), ["0", "1"]),  # 00:30 on 1 January in Moscow
        (dt.date(2026, 12, 31), ["2"]),
        (dt.date(2026, 12, 30), ["3"]),
    ]
    assert [e["clock"] for e in events] == ["12:00", "00:30", "23:59", "11:00"]
