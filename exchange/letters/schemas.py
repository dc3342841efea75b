"""Wire shapes of the letters area: a referral's letter as the API shows it."""

from __future__ import annotations

from typing import Literal

import msgspec


class LetterOut(msgspec.Struct, kw_only=True):
    """A referral's letter: its registration number, the PDF's SHA-256 (hex), and the signature's verdict.

    While the letter is `pending` (numbered, not laid out yet on the sender; announced, not arrived yet on the
    recipient) `sha256` and `signature` are null.
    """

    registration_number: str
    sha256: str | None
    signature: Literal["valid", "invalid", "missing"] | None
    language: str
    status: Literal["pending", "ready"] = "ready"
