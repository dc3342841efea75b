"""What the log shows anyone who wants to witness it: its names and verifier keys, and its latest co-signed checkpoint.

Nothing here is personal data: a checkpoint is a tree size and a hash, the keys are public, and the co-signers are
named by agency id (as they are on every co-signature line). The gateway serves these without authentication
(docs/audit.md, "Witnessing the log").
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc.jwk import OKPKey
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from audit.checkpoint import merge_signatures, verifier_key
from audit.cosignature import cosigner_verifier_key
from audit.identity import LogNames, load_names
from audit.models import AuditCheckpoint, AuditCosignature
from audit.verify import cosigner_public_keys
from tenants.models import PlatformKey, PlatformKeyUse

__all__ = ["PublishedLog", "checkpoint_jwks", "cosigned_checkpoint", "published_log"]


@dataclass(frozen=True, slots=True)
class PublishedLog:
    names: LogNames
    keys: list[Ed25519PublicKey]  # every checkpoint key the log has had, the one in use first
    cosigner_keys: dict[str, list[Ed25519PublicKey]]  # of the agencies that co-signed the latest checkpoint

    def to_json(self) -> dict[str, Any]:
        """``{"origin", "verifier_key", ...}``: the names, each with the verifier keys under it, and the co-signers."""
        current = self.names.current or ""
        return {
            "origin": current,
            "verifier_key": verifier_key(current, self.keys[0]),
            "verifier_keys": [verifier_key(current, key) for key in self.keys],
            "names": [
                {**name.to_json(), "verifier_keys": [verifier_key(name.origin, key) for key in self.keys]}
                for name in self.names.names
            ],
            "cosigners": [
                {"name": name, "verifier_key": cosigner_verifier_key(name, key)}
                for name, keys in sorted(self.cosigner_keys.items())
                for key in keys
            ],
        }


async def _checkpoint_keys(session: AsyncSession) -> list[PlatformKey]:
    """The log's checkpoint keys, the one in use first, then the retired ones newest first."""
    rows = await session.scalars(
        select(PlatformKey)
        .where(PlatformKey.use == PlatformKeyUse.CHECKPOINT.value)
        .order_by(PlatformKey.retired_at.is_not(None), PlatformKey.created_at.desc())
    )
    return list(rows)


def _public_key(key: PlatformKey) -> Ed25519PublicKey | None:
    public = OKPKey.import_key(key.public_jwk).public_key
    return public if isinstance(public, Ed25519PublicKey) else None


async def published_log(session: AsyncSession) -> PublishedLog | None:
    """The log's names and keys, or None while it has neither (no sealer has run yet)."""
    names = await load_names(session)
    keys = [public for key in await _checkpoint_keys(session) if (public := _public_key(key)) is not None]
    if names.current is None or not keys:
        return None
    latest = await session.scalar(select(AuditCheckpoint.size).order_by(AuditCheckpoint.size.desc()).limit(1))
    signers: list[uuid.UUID] = []
    if latest is not None:
        signers = list(
            await session.scalars(select(AuditCosignature.cosigner_tenant_id).where(AuditCosignature.size == latest))
        )
    return PublishedLog(names, keys, await cosigner_public_keys(session, sorted(signers)))


async def cosigned_checkpoint(session: AsyncSession) -> str | None:
    """The latest checkpoint note with every agency's co-signature line after the log's, or None before the first."""
    latest = await session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.size.desc()).limit(1))
    if latest is None:
        return None
    cosigned = await session.scalars(
        select(AuditCosignature.note)
        .where(AuditCosignature.size == latest.size)
        .order_by(AuditCosignature.created_at, AuditCosignature.cosigner_tenant_id)
    )
    return merge_signatures(latest.note, list(cosigned))


async def checkpoint_jwks(session: AsyncSession) -> list[dict[str, Any]]:
    """Every checkpoint key as a JWK for the gateway's JWKS: OKP/Ed25519, ``use`` ``sig``, and no ``alg``.

    Its ``kid`` (``checkpoint-…``) is no access token's, and with no JOSE algorithm named no JOSE library takes it
    for a token key; the gateway's own token verification never reads the JWKS. The same key as a signed-note
    verifier key is in ``/.well-known/audit-log``.
    """
    jwks = []
    for key in await _checkpoint_keys(session):
        public = _public_key(key)
        if public is not None:
            jwk = OKPKey.import_key(public).as_dict(private=False)
            jwks.append({"kty": jwk["kty"], "crv": jwk["crv"], "x": jwk["x"], "kid": key.kid, "use": "sig"})
    return jwks
