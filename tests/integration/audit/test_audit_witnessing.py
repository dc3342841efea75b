"""Anyone can witness the audit log: its verifier key and latest co-signed checkpoint are public, and an implementation
casebridge did not write (Go's golang.org/x/mod/sumdb/note and tlog, from Debian's golang-golang-x-mod-dev) verifies
the checkpoint, its cosignature/v1 co-signatures, an inclusion proof, a consistency proof and an export file.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from joserfc.jwk import OKPKey
from sqlalchemy import select

from audit import checkpoint as notes
from audit.cosignature import Cosigned, parse_cosigner_key, verify_cosignature
from audit.export import export_database
from audit.models import AuditEvent
from audit.publication import cosigned_checkpoint, published_log
from audit.witness import Witness
from gateway.app import build_runtime
from gateway.auth.tokens import access_token_claims, sign_access_token
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.workers import WorkerName
from tenants.models import PlatformKeyUse, Role, TenantKind
from tenants.persistence import platform_session
from tests.integration.helpers.agencies import Agency, agency, dpo_of, open_case
from tests.polling import eventually

VERIFIER_SOURCE = Path(__file__).parent / "c2sp_verify"
# Debian's golang-golang-x-mod-dev installs golang.org/x/mod here; GOPATH mode builds against it with no network.
GOPATH = Path("/usr/share/gocode")


@pytest.fixture(scope="session")
def c2sp_verifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go verifier, built once per test session (about two seconds; the Makefile installs the toolchain)."""
    go = shutil.which("go")
    missing = (
        "the Go toolchain (Debian's golang-go)"
        if go is None
        else "golang.org/x/mod (Debian's golang-golang-x-mod-dev)"
        if not (GOPATH / "src/golang.org/x/mod/sumdb/note").is_dir()
        else None
    )
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} is required in CI: `make test` installs it")
        pytest.skip(f"{missing} is not installed here")
    assert go is not None
    out = tmp_path_factory.mktemp("c2sp_verify")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(out),
        "GOPATH": str(GOPATH),
        "GO111MODULE": "off",
        "GOPROXY": "off",
        "GOFLAGS": "",
        "GOCACHE": str(out / "cache"),
        "CGO_ENABLED": "0",
    }
    built = subprocess.run(
        [go, "build", "-o", str(out / "c2sp_verify"), "."],
        cwd=VERIFIER_SOURCE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return out / "c2sp_verify"


def _verify_with_go(verifier: Path, directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(verifier), str(directory)], capture_output=True, text=True, timeout=60, check=False)


async def _seal_and_cosign(runtime: Runtime, witness: Witness) -> int:
    """Seal everything, sign a checkpoint and have every agency co-sign it, by hand; returns its size."""
    while await runtime.sealer.seal_once():
        pass
    note = await runtime.sealer.checkpoint_once()
    assert note is not None
    outcomes = await witness.witness(note)
    assert {o.status for o in outcomes} == {"cosigned"}, outcomes
    return notes.parse_note(note).checkpoint.size


async def _two_cosigned_checkpoints(api: httpx.AsyncClient, runtime: Runtime) -> tuple[Agency, Agency, int, int]:
    """Two agencies, then two checkpoints each co-signed by both; nothing is sealed or co-signed after that."""
    # The Workers would go on sealing and co-signing as requests come in; here each step is taken by hand instead.
    await runtime.workers[WorkerName.SEALER].stop()
    await runtime.workers[WorkerName.COSIGNER].stop()
    witness = Witness(runtime.sessions, runtime.keyring, runtime.clock, runtime.exchange.audit)
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    opeka = await agency(api, runtime, "opeka", TenantKind.GUARDIANSHIP_BODY, Role.INTAKE)
    await open_case(centre, opeka)
    first = await _seal_and_cosign(runtime, witness)
    await open_case(centre, opeka)
    return centre, opeka, first, await _seal_and_cosign(runtime, witness)


async def test_the_log_is_public_and_go_verifies_its_checkpoint_proofs_and_export(
    api: httpx.AsyncClient, runtime: Runtime, tmp_path: Path, c2sp_verifier: Path
) -> None:
    centre, opeka, first, second = await _two_cosigned_checkpoints(api, runtime)
    dpo = await dpo_of(api, runtime, centre)

    # No credentials: what a witness or any outsider sees.
    log = await api.get("/.well-known/audit-log")
    assert log.status_code == 200, log.text
    published = log.json()
    assert set(published) == {"origin", "verifier_key", "verifier_keys", "names", "cosigners", "checkpoint_url"}
    assert published["origin"] == "localhost/audit"
    assert published["checkpoint_url"] == "http://localhost/audit/checkpoint"
    name, public_key = notes.parse_verifier_key(published["verifier_key"])
    assert name == published["origin"]
    assert published["names"] == [
        {"origin": "localhost/audit", "from_size": 1, "verifier_keys": [published["verifier_key"]]}
    ]
    cosigners = {parse_cosigner_key(c["verifier_key"])[0]: c for c in published["cosigners"]}
    assert set(cosigners) == {notes.cosigner_name(centre.id), notes.cosigner_name(opeka.id)}

    checkpoint = await api.get("/audit/checkpoint")
    assert checkpoint.status_code == 200
    assert checkpoint.headers["content-type"] == "text/plain; charset=utf-8"
    text = checkpoint.text
    signed = notes.verify(text, name=name, public_key=public_key)
    assert isinstance(signed, notes.Checkpoint)
    assert signed.size == second
    for cosigner, entry in cosigners.items():
        key = parse_cosigner_key(entry["verifier_key"])[1]
        assert isinstance(verify_cosignature(text, name=cosigner, public_key=key), Cosigned)
    # A tree size and a hash, keys and agency ids: nothing of any case or person.
    assert len(text.split("\n\n")[0].splitlines()) == 3

    # In the gateway's JWKS too, as a JWK that names no JOSE algorithm.
    jwks = (await api.get("/.well-known/jwks.json")).json()["keys"]
    (jwk,) = [k for k in jwks if k["kid"].startswith("checkpoint-")]
    assert set(jwk) == {"kty", "crv", "x", "kid", "use"}
    assert (jwk["kty"], jwk["crv"], jwk["use"]) == ("OKP", "Ed25519", "sig")
    as_jwk = OKPKey.import_key(jwk).public_key
    assert isinstance(as_jwk, Ed25519PublicKey)
    assert as_jwk.public_bytes_raw() == public_key.public_bytes_raw()

    # The files an outsider would have: the public documents, a DPO's proofs, the operator's export.
    async with platform_session(runtime.sessions) as session:
        event_id = await session.scalar(
            select(AuditEvent.id).where(
                AuditEvent.log_tenant_id == centre.id, AuditEvent.action == "exchange:case:create"
            )
        )
    inclusion = await dpo.get(f"/api/v1/audit/events/{event_id}/proof")
    consistency = await dpo.get("/api/v1/audit/checkpoints/consistency", params={"old": first, "new": second})
    assert (inclusion.status_code, consistency.status_code) == (200, 200), (inclusion.text, consistency.text)
    files = tmp_path / "witness"
    files.mkdir()
    (files / "log.json").write_text(log.text)
    (files / "checkpoint.txt").write_text(text)
    (files / "inclusion.json").write_text(inclusion.text)
    (files / "consistency.json").write_text(consistency.text)
    await export_database(runtime.sessions, files / "export.jsonl", exported_at=runtime.clock.now())

    ran = _verify_with_go(c2sp_verifier, files)
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout)
    assert report["checkpoint"] == {"origin": "localhost/audit", "size": second, "cosignatures": 2}
    assert report["inclusion"] == {"leaf_index": inclusion.json()["leaf_index"], "size": second}
    assert report["consistency"] == {"old_size": first, "new_size": second}
    assert report["export"] == {"events": second, "checkpoints": 2, "cosignatures": 4}

    # It is not a verifier that accepts anything: each of these edits is refused.
    proof = inclusion.json()
    proof["proof"][0] = base64.b64encode(bytes(32)).decode()
    moved = consistency.json()
    moved["proof"][-1] = base64.b64encode(bytes(32)).decode()
    blob = text.rstrip("\n").rsplit(" ", 1)[1]
    raw = bytearray(base64.b64decode(blob))
    raw[11] ^= 1  # the last byte of a co-signature's timestamp
    for file, content, message in (
        ("inclusion.json", json.dumps(proof), "inclusion proof"),
        ("consistency.json", json.dumps(moved), "consistency proof"),
        ("checkpoint.txt", text.replace(blob, base64.b64encode(bytes(raw)).decode()), "checkpoint.txt"),
    ):
        tampered = tmp_path / f"tampered-{file}"
        shutil.copytree(files, tampered)
        (tampered / file).write_text(content)
        ran = _verify_with_go(c2sp_verifier, tampered)
        assert ran.returncode == 1, (file, ran.stdout)
        assert message in ran.stderr


async def test_token_verification_never_takes_the_checkpoint_key(api: httpx.AsyncClient, runtime: Runtime) -> None:
    centre = await agency(api, runtime, "semya", TenantKind.SOCIAL_CENTRE, Role.SPECIALIST)
    assert (await centre.get("/api/v1/directory/tenants")).status_code == 200
    await eventually(lambda: _has_checkpoint_key(runtime), within=30)
    async with platform_session(runtime.sessions) as session:
        (key,) = await runtime.keyring.usable_platform_keys(session, PlatformKeyUse.CHECKPOINT)
    claims = access_token_claims(
        issuer=runtime.settings.server.issuer,
        client_id=centre.client.client_id,
        tenant_id=centre.id,
        role=Role.SPECIALIST,
        scope="directory:read",
        now=int(runtime.clock.now().timestamp()),
        ttl_seconds=300,
    )
    forged = sign_access_token(claims, runtime.keyring.platform_private_jwk(key))
    response = await api.get("/api/v1/directory/tenants", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert "unknown or retired key" in response.text


async def _has_checkpoint_key(runtime: Runtime) -> bool:
    async with platform_session(runtime.sessions) as session:
        return bool(await runtime.keyring.usable_platform_keys(session, PlatformKeyUse.CHECKPOINT))


async def test_nothing_is_published_before_the_log_exists(settings: Settings) -> None:
    node = build_runtime(settings, workers=())  # no sealer has run: the log has no name, key or checkpoint yet
    try:
        async with platform_session(node.sessions) as session:
            assert await published_log(session) is None
            assert await cosigned_checkpoint(session) is None
    finally:
        await node.engine.dispose()
