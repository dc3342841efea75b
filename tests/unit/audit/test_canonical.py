"""The fast canonical JSON writes exactly what the RFC 8785 reference implementation writes."""

from __future__ import annotations

import enum
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from audit import canonical
from audit.canonical import canonical_json

_scalars = st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text() | st.floats(allow_nan=False)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def _reference(value: Any) -> bytes | None:
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, ValueError, UnicodeEncodeError):
        return None


@given(_values)
def test_matches_the_reference_implementation(value: Any) -> None:
    expected = _reference(value)
    if expected is None:
        with pytest.raises((rfc8785.CanonicalizationError, ValueError, UnicodeEncodeError)):
            canonical_json(value)
    else:
        assert canonical_json(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"\ue000": 1, "\U0001f600": 2},  # UTF-16 order puts the emoji (a surrogate pair) first
        {"control": "\x00\x01\x08\t\n\x0b\x0c\r\x1f\x7f", "quote": '"\\/'},
        {"edge": 2**53 - 1, "negative": -(2**53 - 1)},
        {"ru": "Сведения о ребёнке", "nested": [{"b": None, "a": [True, False]}]},
        {"float": 1.5, "exp": 1e21},
    ],
)
def test_edge_cases(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def test_integers_beyond_the_safe_range_are_refused_like_the_reference() -> None:
    with pytest.raises(rfc8785.IntegerDomainError):
        canonical_json({"big": 2**53})


class _Role(enum.StrEnum):
    SPECIALIST = "specialist"
    EMOJI = "\U0001f600"


def test_str_subclasses_take_the_fast_path_and_write_their_text(monkeypatch: pytest.MonkeyPatch) -> None:
    value = {"role": _Role.SPECIALIST, _Role.SPECIALIST: [_Role.EMOJI], "actor": {"role": _Role.EMOJI}}
    expected = rfc8785.dumps(value)

    def no_reference(_value: Any) -> bytes:
        raise AssertionError("the reference implementation was used")

    monkeypatch.setattr(canonical.rfc8785, "dumps", no_reference)
    assert (
        canonical_json(value) == expected == b'{"actor":{"role":"\xf0\x9f\x98\x80"},"role":"specialist",'
        b'"specialist":["\xf0\x9f\x98\x80"]}'
    )
