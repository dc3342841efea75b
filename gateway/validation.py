"""Validation failures as plain sentences naming the field: never the validator's own words.

msgspec (and Litestar, which runs it on parameters and bodies) describes a failure in its own notation: "Expected
`array` of length >= 1 - at `$.categories`". `field_error` reads that notation into a `FieldError` (which field,
what kind of failure, the limit involved); `sentence` says it in English for the API, and the staff pages say the
same sentence in the user's language (the sentences are marked for the web catalogues, `make messages`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from tenants.calendar import DAY_RANGE, FIRST_DAY, LAST_DAY, NOT_A_DAY, OUT_OF_CALENDAR


def N_(message: str) -> str:  # noqa: N802 - the gettext marker the catalogue extraction looks for
    return message


@dataclass(frozen=True, slots=True)
class FieldError:
    """One failed field: its path (`subjects[0].birth_date`; empty for the body as a whole), the kind of failure
    (a stable code, also given to API clients), and the limit or expected kind of value the sentence names."""

    field: str
    code: str
    limit: str = ""

    def as_member(self) -> dict[str, str]:
        """The problem document's `errors` entry: machine-readable, with the sentence a person reads."""
        member = {"field": self.field, "code": self.code, "message": sentence(self)}
        if self.limit:
            member["limit"] = self.limit
        return member


# What each kind of value is called in a sentence ("must be a whole number").
KINDS: Final = {
    "str": N_("text"),
    "int": N_("a whole number"),
    "float": N_("a number"),
    "bool": N_("true or false"),
    "array": N_("a list"),
    "object": N_("an object"),
    "null": N_("empty"),
    "date": N_("a date such as 2026-03-01"),
    "datetime": N_("a time with an offset such as 2026-03-01T12:00:00Z"),
    "time": N_("a time of day such as 09:30"),
    "uuid": N_("an id (UUID)"),
}

SENTENCES: Final = {
    "required": N_("%(field)s is required."),
    "body_required": N_("The request needs a body, and this one has none."),
    "type": N_("%(field)s must be %(kind)s."),
    "empty": N_("%(field)s must not be empty."),
    "too_short": N_("%(field)s must be at least %(limit)s characters long."),
    "too_long": N_("%(field)s must be at most %(limit)s characters long."),
    "none_chosen": N_("%(field)s: choose at least one."),
    "too_few": N_("%(field)s needs at least %(limit)s items."),
    "too_many": N_("%(field)s takes at most %(limit)s items."),
    "too_small": N_("%(field)s must be at least %(limit)s."),
    "too_large": N_("%(field)s must be at most %(limit)s."),
    "format": N_("%(field)s is not in the expected format."),
    "choice": N_("%(field)s is not one of the allowed values."),
    "unknown": N_("%(field)s is not a field of this request."),
    "calendar": N_("%(field)s must lie between %(first)s and %(last)s."),
    "invalid": N_("%(field)s is not valid."),
}
# How the body as a whole is named when the failure is not about one of its fields.
THE_BODY: Final = N_("The request body")

_AT = re.compile(r"^(?P<text>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_RULES: Final = (
    (re.compile(r"^Object missing required field `(?P<name>[^`]+)`$"), "required"),
    (re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$"), "unknown"),
    (re.compile(r"^Expected `str` of length >= (?P<limit>\d+)$"), "too_short"),
    (re.compile(r"^Expected `str` of length <= (?P<limit>\d+)$"), "too_long"),
    (re.compile(r"^Expected `(?:array|object|set)` of length >= (?P<limit>\d+)$"), "too_few"),
    (re.compile(r"^Expected `(?:array|object|set)` of length <= (?P<limit>\d+)$"), "too_many"),
    (re.compile(r"^Expected `(?:int|float|number)` >= (?P<limit>-?[\d.e+]+)$"), "too_small"),
    (re.compile(r"^Expected `(?:int|float|number)` > (?P<limit>-?[\d.e+]+)$"), "too_small_exclusive"),
    (re.compile(r"^Expected `(?:int|float|number)` <= (?P<limit>-?[\d.e+]+)$"), "too_large"),
    (re.compile(r"^Expected `(?:int|float|number)` < (?P<limit>-?[\d.e+]+)$"), "too_large_exclusive"),
    (re.compile(r"^Expected `str` matching regex "), "format"),
    (re.compile(r"^Invalid (?:enum )?value "), "choice"),
    (re.compile(r"^Expected `(?P<kind>\w+)`, got `\w+`$"), "type"),
    (re.compile(r"^Invalid UUID"), "type:uuid"),
    (re.compile(r"^Invalid RFC3339 encoded (?P<kind>date|datetime|time)$"), "type"),
    (re.compile(r"^Expected `(?P<kind>datetime|time)` with a timezone component$"), "type"),
    (re.compile(r"^Expected `(?P<kind>\w+)`"), "type"),
    (re.compile(r"^Integer value out of range$"), "type:int"),
)


def field_error(message: str, key: str = "") -> FieldError:
    """The failure that a msgspec message describes; `key` is the field Litestar found it on (query parameters and
    `data.<path>` for bodies), used when the message itself names no path."""
    match = _AT.match(message.strip())
    text = match["text"] if match else message
    path = _join(_field_of(key), (match["path"] or "").lstrip(".") if match else "")
    if text.startswith(OUT_OF_CALENDAR):
        return FieldError(_join(path, text.partition("`")[2].rstrip("`")), "calendar", DAY_RANGE)
    if text.startswith(NOT_A_DAY):
        return FieldError(_join(path, text.partition("`")[2].rstrip("`")), "format")
    for pattern, code in _RULES:
        found = pattern.match(text)
        if found is None:
            continue
        groups = found.groupdict()
        if "name" in groups:
            return FieldError(_join(path, groups["name"]), code)
        if code.startswith("type"):
            kind = code.partition(":")[2] or groups.get("kind", "")
            return FieldError(path, "type", kind if kind in KINDS else "")
        if code.endswith("_exclusive"):  # "> 0" is said as "at least 1" for whole numbers
            return FieldError(path, code.removesuffix("_exclusive"), _next(groups["limit"], code))
        if code == "too_short" and groups["limit"] == "1":
            return FieldError(path, "empty")
        if code == "too_few" and groups["limit"] == "1":
            return FieldError(path, "none_chosen")
        return FieldError(path, code, groups.get("limit", ""))
    return FieldError(path, "invalid")


_MISSING_PARAMETER = re.compile(r"^Missing required (?:query|header|cookie|path) parameter '(?P<name>[^']+)'")


def from_litestar(extra: Any, detail: str = "") -> list[FieldError]:
    """The failures in a Litestar ValidationException: its `extra` (a list of {"key", "message", "source"}), or for a
    missing parameter its detail alone ("Missing required query parameter 'new' for path ...")."""
    if missing := _MISSING_PARAMETER.match(detail):
        return [FieldError(missing["name"], "required")]
    errors = []
    for item in extra if isinstance(extra, list) else []:
        if not isinstance(item, dict):
            continue
        key, message = str(item.get("key", "")), str(item.get("message", ""))
        if key == "data" and not message.startswith(("Expected", "Object", "Invalid", OUT_OF_CALENDAR, NOT_A_DAY)):
            # No body at all: Litestar found the handler's `data` missing and says so in words of its own.
            errors.append(FieldError("", "body_required"))
            continue
        errors.append(field_error(message, key))
    return errors


def sentence(error: FieldError, gettext: Any = None) -> str:
    """The failure in one sentence; `gettext` translates it (the staff pages), otherwise it is English."""
    _ = gettext or (lambda text: text)
    template = _(SENTENCES.get(error.code, SENTENCES["invalid"]))
    values = {
        "field": error.field or _(THE_BODY),
        "limit": error.limit,
        "kind": _(KINDS.get(error.limit, "")) if error.code == "type" else "",
        "first": FIRST_DAY.isoformat(),
        "last": LAST_DAY.isoformat(),
    }
    if error.code == "type" and not values["kind"]:
        template = _(SENTENCES["invalid"])
    return str(template % values)


def _field_of(key: str) -> str:
    if key == "data":
        return ""
    return key.removeprefix("data.")


def _join(parent: str, child: str) -> str:
    if not child:
        return parent
    if not parent:
        return child
    return f"{parent}{child}" if child.startswith("[") else f"{parent}.{child}"


def _next(limit: str, code: str) -> str:
    try:
        number = int(limit)
    except ValueError:
        return limit
    return str(number + 1 if code.startswith("too_small") else number - 1)
