"""The typed bodies of envelopes: one msgspec Struct per envelope type and version, shared by sender and inbox.

Wire rules (docs/envelope.md): bodies are JSON objects; a body without `v` is version 1; a new field goes last with a
default and is ignored by older nodes; anything else is a new version of the body, and nodes keep accepting the
versions they accepted before. Optional members are left out rather than sent as null (`omit_defaults`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from exchange.transport.envelopes import EnvelopeType

# An instant: RFC 3339 with an offset; a time without one is refused rather than guessed.
Instant = Annotated[dt.datetime, msgspec.Meta(tz=True)]


class Body(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """What every body has in common: the type and version it is (class attributes, not members)."""

    TYPE: ClassVar[EnvelopeType]
    VERSION: ClassVar[int] = 1


class LegalBasisBody(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    type: Literal["consent", "statutory"]
    reference: str | None = None


class LetterNotice(msgspec.Struct, kw_only=True, frozen=True):
    """`letter` of referral.requested: the letter that will follow in a referral.letter envelope."""

    v: int  # always sent, so that a later version of the notice can be told apart
    registration_number: str = ""
    language: str = "ru"
    name: str | None = None


class ReferralRequested(Body, frozen=True):
    """A referral sent to the recipient: its text, deadlines, basis, and exactly the permitted projection."""

    TYPE: ClassVar[EnvelopeType] = EnvelopeType.REFERRAL_REQUESTED

    referral_id: uuid.UUID
    kind: str
    purpose: str
    urgency: str
    respond_by: Instant
    complete_by: Instant
    case_ref: str
    categories: list[str]
    legal_basis: LegalBasisBody
    requested_at: Instant
    subject_pseudonyms: list[str] = []
    problem: str = ""
    requested_service: str = ""
    justification: str | None = None
    # Each subject as the permitted categories release it (exchange.cases.services.SUBJECT_FIELDS): at least its ref.
    subjects: list[dict[str, Any]] = []
    needs: dict[str, Any] | None = None
    summary: str | None = None
    plan: dict[str, str] | None = None
    service: str | None = None
    letter: LetterNotice | None = None
    # The deadlines' days as the sender picked them (respond_by and complete_by are the ends of those days in the
    # sender's time zone). A referral from an older node has none: its days are then its instants' UTC dates, which
    # is how those nodes stored a day picked in their pages.
    respond_by_date: dt.date | None = None
    complete_by_date: dt.date | None = None


class ReferralStatus(Body, frozen=True):
    """A move of the referral's status by one side, with its note and outcome."""

    TYPE: ClassVar[EnvelopeType] = EnvelopeType.REFERRAL_STATUS

    referral_id: uuid.UUID
    status: str
    at: Instant
    note: str | None = None
    outcome: str | None = None


class Attachment(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    media_type: str
    sha256: str
    content: str  # base64


class ReferralMessage(Body, frozen=True):
    """A thread message, with its attachments inside."""

    TYPE: ClassVar[EnvelopeType] = EnvelopeType.REFERRAL_MESSAGE

    referral_id: uuid.UUID
    message_id: uuid.UUID
    at: Instant
    body: str
    attachments: list[Attachment] = []


class ConsentWithdrawn(Body, frozen=True):
    """The family withdrew a consent that these referrals relied on."""

    TYPE: ClassVar[EnvelopeType] = EnvelopeType.CONSENT_WITHDRAWN

    consent_id: uuid.UUID
    referral_ids: list[uuid.UUID]
    withdrawn_at: Instant


class ReceiptActor(msgspec.Struct, kw_only=True, frozen=True):
    kind: str
    id: uuid.UUID | None = None
    role: str | None = None


class AccessReceipt(Body, frozen=True):
    """Someone at the recipient opened data the sender shared (for the sender's audit trail)."""

    TYPE: ClassVar[EnvelopeType] = EnvelopeType.ACCESS_RECEIPT

    referral_id: uuid.UUID
    action: str
    at: Instant
    actor: ReceiptActor
    purpose: str | None = None
    subjects: list[str] = []
    resource: str | None = None
    # The recipient's own legal basis for the data (its reference), when it has recorded one: the sender's trail
    # then shows the read as made under it, also after the family withdrew consent.
    own_basis: str | None = None


class Receipt(Body, frozen=True):
    """Version 1: one envelope applied by the recipient. Still accepted; nodes now send version 2."""

    TYPE: ClassVar[EnvelopeType] = EnvelopeType.RECEIPT

    envelope_id: uuid.UUID
    type: str
    applied_at: Instant


class AppliedEnvelope(msgspec.Struct, kw_only=True, frozen=True):
    envelope_id: uuid.UUID
    type: str


class ReceiptBatch(Body, frozen=True):
    """Version 2: every envelope from one sender that the recipient applied in one batch."""

    TYPE: ClassVar[EnvelopeType] = EnvelopeType.RECEIPT
    VERSION: ClassVar[int] = 2

    v: Literal[2]
    envelopes: list[AppliedEnvelope]
    applied_at: Instant

    def __post_init__(self) -> None:
        if not self.envelopes:
            raise msgspec.ValidationError("a receipt lists at least one envelope")


class LetterBody(msgspec.Struct, kw_only=True, frozen=True):
    """The signed letter itself (`letter` of referral.letter)."""

    v: int  # always sent (1)
    registration_number: str
    language: str
    name: str
    media_type: str
    sha256: str
    signature: str  # detached JWS over the PDF's SHA-256 (docs/letters.md)
    content: str  # base64 PDF


class ReferralLetter(Body, frozen=True):
    """The sender's laid-out and signed letter for a referral sent earlier."""

    TYPE: ClassVar[EnvelopeType] = EnvelopeType.REFERRAL_LETTER

    referral_id: uuid.UUID
    # A LetterBody as sent; read as any JSON value, because the recipient keeps even a letter it cannot verify and
    # shows it as invalid (exchange.letters.services.accept_letter checks every member).
    letter: Any


AnyBody = (
    ReferralRequested
    | ReferralStatus
    | ReferralMessage
    | ConsentWithdrawn
    | AccessReceipt
    | Receipt
    | ReceiptBatch
    | ReferralLetter
)
# Every body a node accepts, by type and version. plan.task is reserved: plan tasks travel as referral.requested.
BODIES: dict[tuple[EnvelopeType, int], type[Body]] = {
    (body.TYPE, body.VERSION): body
    for body in (
        ReferralRequested,
        ReferralStatus,
        ReferralMessage,
        ConsentWithdrawn,
        AccessReceipt,
        Receipt,
        ReceiptBatch,
        ReferralLetter,
    )
}


class BodyError(ValueError):
    """The body does not match its type and version; the message names them, never the body's content."""


class _Version(msgspec.Struct):
    v: int = 1


_VERSION = msgspec.json.Decoder(_Version)
_DECODERS = {key: msgspec.json.Decoder(body) for key, body in BODIES.items()}


def decode_body(envelope_type: EnvelopeType, payload: bytes) -> Body:
    """The typed body of an opened envelope; BodyError when it is not one this node accepts."""
    try:
        version = _VERSION.decode(payload).v
    except msgspec.DecodeError as exc:
        raise BodyError(f"the {envelope_type.value} body is not a JSON object with an integer v") from exc
    decoder = _DECODERS.get((envelope_type, version))
    if decoder is None:
        raise BodyError(f"this node does not accept {envelope_type.value} bodies of version {version}")
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        # msgspec names the path (e.g. `$.subjects[0]`); a quoted value it may echo is cut out, as body text can be
        # personal data and this message reaches logs and dead letters.
        problem = re.sub(r"'[^']*'", "'…'", str(exc))
        raise BodyError(f"the {envelope_type.value} v{version} body does not match its schema: {problem}") from None
    except msgspec.DecodeError as exc:
        raise BodyError(f"the {envelope_type.value} body is not valid JSON") from exc


def encode_body(body: Body) -> bytes:
    return msgspec.json.encode(body)


def body_schemas() -> dict[str, Any]:
    """JSON Schema of every body this node sends and accepts, keyed `<type> v<version>` (for docs/envelope.md)."""
    schemas, components = msgspec.json.schema_components(list(BODIES.values()), ref_template="#/$defs/{name}")
    return {
        "$defs": components,
        "bodies": {f"{key[0].value} v{key[1]}": schema for key, schema in zip(BODIES, schemas, strict=True)},
    }


_PURPOSE = {
    EnvelopeType.REFERRAL_REQUESTED: "the referral, sent by its sender",
    EnvelopeType.REFERRAL_STATUS: "a move of the referral's status, by either side",
    EnvelopeType.REFERRAL_MESSAGE: "a thread message with its attachments, by either side",
    EnvelopeType.CONSENT_WITHDRAWN: "the family withdrew a consent these referrals relied on, by the sender",
    EnvelopeType.ACCESS_RECEIPT: "someone at the recipient opened the shared data, by the recipient",
    EnvelopeType.RECEIPT: "the recipient applied envelopes; a node sends version 2 and accepts both",
    EnvelopeType.REFERRAL_LETTER: "the laid-out, signed letter of a referral, by its sender",
}


def bodies_markdown() -> str:
    """The body reference of docs/envelope.md (between its `bodies` markers), generated from the Structs above."""
    definitions = dict(body_schemas()["$defs"])
    lines = ["| type | version | what it says |", "|---|---|---|"]
    lines += [f"| `{t.value}` | {v} | {_PURPOSE[t]} |" for t, v in BODIES]
    for (envelope_type, version), body in BODIES.items():
        schema = definitions.pop(body.__name__)
        lines += [
            "",
            f"### `{envelope_type.value}` version {version} (`{body.__name__}`)",
            "",
            "```json",
            json.dumps(schema, indent=2, ensure_ascii=False),
            "```",
        ]
    lines += [
        "",
        "### Shared definitions (`#/$defs/...`)",
        "",
        "```json",
        json.dumps(definitions, indent=2, ensure_ascii=False),
        "```",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(bodies_markdown(), end="")
