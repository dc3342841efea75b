"""What an uploaded document really is: its first bytes checked against the media type it was sent as and against the
allow-list, so a file never travels to a partner (or opens on their screen) as something it is not."""

from __future__ import annotations

from typing import Final

from tenants.errors import InvalidInput

# The signatures ("magic numbers") that open each binary type: ISO 32000-2 §7.5.2 (PDF), ISO/IEC 15948 §5.2 (PNG),
# ISO/IEC 10918-1 Annex B (JPEG: SOI then the first marker's FF).
SIGNATURES: Final = {
    "application/pdf": b"%PDF-",
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
}
TEXT: Final = "text/plain"
ALLOWED_MEDIA_TYPES: Final = frozenset({*SIGNATURES, TEXT})
NAMES: Final = {
    "application/pdf": "a PDF document",
    "image/png": "a PNG image",
    "image/jpeg": "a JPEG image",
    TEXT: "plain text",
}
# Control characters plain text may hold: tab, line feed, form feed, carriage return.
_TEXT_CONTROLS: Final = frozenset(b"\t\n\x0c\r")


class UnsupportedDocument(InvalidInput):
    """An upload of a type casebridge does not take, or whose content is not the type it was sent as.

    `declared` is the media type it was sent as (without parameters); `found` what its content is, when it is one
    of the allowed types (None when it is none of them).
    """

    def __init__(self, message: str, *, declared: str, found: str | None) -> None:
        super().__init__(message)
        self.declared = declared
        self.found = found


def essence(media_type: str | None) -> str:
    """A media type without its parameters, in lower case (RFC 9110 §8.3.1): `Text/Plain; charset=utf-8` is
    text/plain."""
    return (media_type or "").partition(";")[0].strip().lower()


def content_type_of(content: bytes) -> str | None:
    """The allowed type the content itself shows: a binary signature, else UTF-8 text without binary controls."""
    for media_type, signature in SIGNATURES.items():
        if content.startswith(signature):
            return media_type
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any((ord(c) < 0x20 and ord(c) not in _TEXT_CONTROLS) or ord(c) == 0x7F for c in text):
        return None
    return TEXT


def checked_media_type(declared: str | None, content: bytes) -> str:
    """The media type to store an upload under: the declared one, once the allow-list and the content agree with it.

    Raises UnsupportedDocument otherwise (an empty upload is the caller's to refuse first)."""
    media_type, found = essence(declared), content_type_of(content)
    allowed = ", ".join(sorted(ALLOWED_MEDIA_TYPES))
    if media_type not in ALLOWED_MEDIA_TYPES:
        raise UnsupportedDocument(
            f"Documents must be one of: {allowed}; this one was sent as {media_type or 'no type'}.",
            declared=media_type,
            found=found,
        )
    if found is None:
        raise UnsupportedDocument(
            f"The file was sent as {media_type}, but its content is none of the types casebridge takes ({allowed}).",
            declared=media_type,
            found=None,
        )
    if found != media_type:
        raise UnsupportedDocument(
            f"The file was sent as {media_type}, but its content is {NAMES[found]} ({found}); "
            "send it with its real type.",
            declared=media_type,
            found=found,
        )
    return media_type
