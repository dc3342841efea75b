"""A sealed audit log made in memory, the way the sealer makes one: SIZE events of one tenant, their seals and
checkpoints signed with a fixed key, for the tests of verification and of what is derived from the log."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import Checkpoint, sign
from audit.events import Action, Actor, AuditEventRecord, Outcome
from audit.merkle import leaf_hash, root_hash
from audit.verify import ZERO_HASH, SealedEvent

ORIGIN = "casebridge.test/audit"
LOG_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
SIZE = 50
CHECKPOINT_SIZES = (10, 25, SIZE)
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
TENANT = uuid.UUID("01960000-0000-7000-8000-000000000001")


def canonical_event(n: int) -> str:
    """The canonical text of the `n`th event of the log: a read of a referral in TENANT's trail."""
    record = AuditEventRecord(
        id=uuid.UUID(int=(0x0196 << 112) | (7 << 76) | (2 << 62) | n),
        time=START + dt.timedelta(seconds=n),
        log_tenant_id=TENANT,
        actor=Actor(kind="user", id=uuid.UUID(int=n + 1000), tenant_id=TENANT, role="specialist"),
        action=Action.EXCHANGE_REFERRAL_READ,
        outcome=Outcome.SUCCESS,
        resource_type="referral",
        resource_id=str(uuid.UUID(int=n + 2000)),
        subjects=(f"ps_{n:032x}",),
        purpose="social_support",
        extra={"n": n, "note": "Семья"},
    )
    return rfc8785.dumps(record.to_json()).decode()


def seal(canonicals: list[str], *, first_seq: int = 1, previous: bytes = ZERO_HASH) -> list[SealedEvent]:
    """Seal the given contents the way the sealer does."""
    sealed = []
    chain = previous
    for offset, text in enumerate(canonicals):
        data = text.encode()
        chain = hashlib.sha256(chain + data).digest()
        event_id = uuid.UUID(json.loads(text)["id"])
        sealed.append(SealedEvent(first_seq + offset, event_id, text, chain, leaf_hash(data)))
    return sealed


def checkpoint_notes(events: list[SealedEvent], sizes: tuple[int, ...] = CHECKPOINT_SIZES) -> list[str]:
    """Checkpoints of `events` at each of `sizes`, signed with LOG_KEY under ORIGIN."""
    leaves = [e.leaf_hash for e in events]
    return [sign(Checkpoint(ORIGIN, s, root_hash(leaves[:s])), name=ORIGIN, private_key=LOG_KEY) for s in sizes]


EVENTS = seal([canonical_event(n) for n in range(1, SIZE + 1)])
