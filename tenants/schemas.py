"""Wire shapes of the tenants area (msgspec structs, unknown fields refused)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, ClassVar, Literal

import msgspec

from tenants.calendar import (
    DAY_DESCRIPTION,
    DEADLINE_DESCRIPTION,
    DEADLINE_PATTERN,
    INSTANT_DESCRIPTION,
    NOT_A_DAY,
    OUT_OF_CALENDAR,
    YEARS_PATTERN,
    in_calendar,
    read_deadline,
)

# A date or an instant of a request body, described in OpenAPI with the range Strict enforces (tenants/calendar.py).
# Litestar reads the `extra` member of extra_json_schema as additional schema keywords.
_IN_CALENDAR = {"extra": {"pattern": YEARS_PATTERN}}
Day = Annotated[dt.date, msgspec.Meta(description=DAY_DESCRIPTION, extra_json_schema=_IN_CALENDAR)]
Instant = Annotated[dt.datetime, msgspec.Meta(description=INSTANT_DESCRIPTION, extra_json_schema=_IN_CALENDAR)]
# A deadline (tenants.calendar.deadline): a day, or a time standing for its day. One string, since msgspec decodes no
# union of a date and a time; a Strict body names its deadline fields in DEADLINES so that they are checked as days.
DeadlineIn = Annotated[
    str,
    msgspec.Meta(
        pattern=DEADLINE_PATTERN,
        description=DEADLINE_DESCRIPTION,
        examples=["2026-12-31"],
        extra_json_schema={
            "extra": {"anyOf": [{"format": kind, "pattern": YEARS_PATTERN} for kind in ("date", "date-time")]}
        },
    ),
]


class Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: an unknown field is an error, not silently dropped, and so is any date or time
    outside the calendar casebridge accepts, whatever field it is in (tenants/calendar.py)."""

    # The fields that hold a DeadlineIn: each must be a real day (or time) of the calendar.
    DEADLINES: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name in self.DEADLINES and isinstance(value, str):
                try:
                    value = read_deadline(value)
                except ValueError:
                    raise ValueError(f"{NOT_A_DAY} `{name}`") from None
            if isinstance(value, dt.date) and not in_calendar(value):
                # msgspec reports a ValueError here as a ValidationError at this struct's path.
                raise ValueError(f"{OUT_OF_CALENDAR} `{name}`")


class Contacts(Strict):
    phone: str | None = msgspec.field(default=None)
    email: str | None = None
    website: str | None = None
    address: str | None = None
    hours: str | None = None


# A problem category or service code: lower-case ASCII, shared by every agency so searches match across them.
Code = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
District = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Document = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
IntakeRules = Annotated[str, msgspec.Meta(max_length=2000)]


class ServiceOffer(Strict):
    """One service an agency offers, in the spirit of Open Referral HSDS `service`.

    `code` names the service within its agency's profile (a referral may name it, and the directory's figures are
    kept per code); without one, the service's first problem category is its code.
    """

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    problems: Annotated[list[Code], msgspec.Meta(max_length=50)]
    description: Annotated[str, msgspec.Meta(max_length=2000)] | None = None
    districts: Annotated[list[District], msgspec.Meta(max_length=100)] = msgspec.field(default_factory=list)
    documents_required: Annotated[list[Document], msgspec.Meta(max_length=50)] = msgspec.field(default_factory=list)
    intake_rules: IntakeRules | None = None
    code: Code | None = None


class Address(Strict):
    """HSDS `physical_address`: where citizens come."""

    address_1: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    city: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    region: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    postal_code: Annotated[str, msgspec.Meta(max_length=16)] | None = None
    country: Annotated[str, msgspec.Meta(min_length=2, max_length=2, pattern=r"^[A-Z]{2}$")] = "RU"


Weekday = Literal["mo", "tu", "we", "th", "fr", "sa", "su"]
ClockTime = Annotated[str, msgspec.Meta(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class OpeningHours(Strict):
    """HSDS `schedule`, simplified: the days (iCalendar BYDAY codes) on which the agency is open from/to (local)."""

    days: Annotated[list[Weekday], msgspec.Meta(min_length=1, max_length=7)]
    opens_at: ClockTime
    closes_at: ClockTime
    note: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class ProfileUpdate(Strict):
    """What an agency publishes about itself in the directory; replaces the previous profile whole."""

    contacts: Contacts
    services: Annotated[list[ServiceOffer], msgspec.Meta(max_length=100)]
    address: Address | None = None
    # HSDS `service_area` for the whole agency; a service may name districts of its own.
    districts: Annotated[list[District], msgspec.Meta(max_length=100)] = msgspec.field(default_factory=list)
    opening_hours: Annotated[list[OpeningHours], msgspec.Meta(max_length=14)] = msgspec.field(default_factory=list)
    documents_required: Annotated[list[Document], msgspec.Meta(max_length=50)] = msgspec.field(default_factory=list)
    intake_rules: IntakeRules | None = None


class DirectoryStats(msgspec.Struct, kw_only=True):
    """How a partner really answers and completes referrals: computed from past referral timelines, never typed in.

    The first two members are the API contract's. None wherever a figure would rest on fewer than `min_cell`
    referrals, and every count below `min_cell` is None too (zero included): small cells would single out one
    referral.
    """

    median_hours_to_accept: float | None = None
    median_days_to_complete: float | None = None
    p90_hours_to_accept: float | None = None
    p90_days_to_complete: float | None = None
    # accepted / (accepted + rejected)
    acceptance_rate: float | None = None
    # completed by complete_by / accepted referrals whose completion was due
    on_time_rate: float | None = None
    referral_count: int | None = None
    answered_count: int | None = None
    accepted_count: int | None = None
    completed_count: int | None = None
    due_count: int | None = None
    window_days: int = 0
    # the fewest referrals a figure or count rests on before it is shown
    min_cell: int = 0


class ServiceEntry(msgspec.Struct, kw_only=True):
    code: str
    name: str
    problems: list[str]
    description: str | None = None
    districts: list[str] = msgspec.field(default_factory=list)
    documents_required: list[str] = msgspec.field(default_factory=list)
    intake_rules: str | None = None
    stats: DirectoryStats = msgspec.field(default_factory=DirectoryStats)


class DirectoryEntry(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    slug: str
    name: str
    kind: str
    region: str | None
    services: list[ServiceEntry]
    jwks_url: str
    stats: DirectoryStats
    contacts: dict[str, Any] = msgspec.field(default_factory=dict)
    status: str = "active"
    address: dict[str, Any] | None = None
    districts: list[str] = msgspec.field(default_factory=list)
    opening_hours: list[dict[str, Any]] = msgspec.field(default_factory=list)
    documents_required: list[str] = msgspec.field(default_factory=list)
    intake_rules: str | None = None


class DirectoryPage(msgspec.Struct, kw_only=True):
    items: list[DirectoryEntry]


class TenantCreated(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    slug: str
    name: str
    kind: str
    jwks_url: str


class UserCreated(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    roles: list[str]


class ClientCreated(msgspec.Struct, kw_only=True):
    client_id: str
    tenant_id: uuid.UUID
    scopes: list[str]
    role: str


class KeysRotated(msgspec.Struct, kw_only=True):
    tenant_id: uuid.UUID
    enc_kid: str
    sig_kid: str


class NodeAgency(msgspec.Struct, kw_only=True):
    """An agency a node hosts, as its node describes it to peers: directory data only, nothing about people."""

    id: uuid.UUID
    slug: str
    name: str
    kind: str
    region: str | None = None
    service_profile: dict[str, Any] = msgspec.field(default_factory=dict)
    jwks_url: str


class NodeDescription(msgspec.Struct, kw_only=True):
    """GET /.well-known/casebridge-node: the node, its audit log's name and the agencies it hosts (version 1)."""

    v: int = 1
    name: str
    audit_origin: str | None
    tenants: list[NodeAgency]
