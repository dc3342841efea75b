"""RFC 8785 (JCS) canonical JSON for audit events, with a fast path through the C JSON encoder.

For values made only of objects with string keys, arrays, strings, integers, booleans and null, JCS output is what
``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` writes, provided that

- no key contains a code point at or above U+D800: JCS sorts keys by UTF-16 code units and Python by code points,
  and the two orders differ only when such a key meets one with a supplementary-plane character;
- no string holds a lone surrogate, which has no UTF-8 encoding (JCS rejects it);
- integers stay within ±(2**53 - 1), where JCS's ECMAScript number formatting writes them as Python does.

Both encoders escape exactly `"`, `\\` and U+0000..U+001F, using the short escapes \\b \\f \\n \\r \\t and lower-case
\\u00xx for the rest. Anything outside the fast path (floats, say) goes to the reference implementation.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

_SAFE_INTEGER = 2**53 - 1
_SURROGATES = "\ud800"  # the lowest code point needing care (see the module docstring)


# What json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False) uses, made once.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 serialisation of ``value`` as UTF-8 bytes."""
    if _fast_path_holds(value):
        return _ENCODER.encode(value).encode()
    return rfc8785.dumps(value)


def _fast_path_holds(value: Any) -> bool:
    if value is None or value is True or value is False:
        return True
    if isinstance(value, str):  # str subclasses too (a StrEnum role): both encoders write their text
        return _plain_string(value)
    kind = type(value)
    if kind is int:
        return bool(-_SAFE_INTEGER <= value <= _SAFE_INTEGER)
    if kind is dict:
        return all(_plain_key(k) and _fast_path_holds(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_fast_path_holds(item) for item in value)
    return False


def _plain_key(key: object) -> bool:
    return isinstance(key, str) and (key.isascii() or max(key) < _SURROGATES)


def _plain_string(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False  # a lone surrogate
    return True
