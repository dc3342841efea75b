"""The `casebridge` command line: serve, migrate, and administer tenants, people, clients and keys (cli_admin.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from gateway.settings import Settings, SettingsError
from tenants.calendar import DEFAULT_TIME_ZONE
from tenants.errors import CasebridgeError
from tenants.vocabulary import Role, Scope, TenantKind

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import AsyncEngine


# Only what parsing needs is imported above. Each command imports the rest (SQLAlchemy, Alembic, the domain, the web
# application) in the function that runs it, so that `--help` and a usage error answer at once and an administrative
# command loads no more than it uses.


class CliError(Exception):
    """A failure to report on stderr with a non-zero exit."""


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command not in ("serve", "worker"):
        _without_the_web_framework()
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.db import MasterKeyError
    from gateway.processes import LayoutError

    try:
        settings = Settings.from_env()
        if args.command == "serve":
            _serve(settings, args.host, args.port, args.workers)
            return
        if args.command == "worker":
            _worker(settings, args.only)
            return
        result = asyncio.run(_run(settings, args))
    except (CliError, CasebridgeError, SettingsError, MasterKeyError, LayoutError) as exc:
        _fail(str(exc))
    except SQLAlchemyError as exc:
        _fail(_database_problem(exc))
    except KeyboardInterrupt:
        _fail("interrupted", code=130)
    if getattr(args, "table", False):
        from gateway.demo_table import demo_table

        sys.stdout.write(demo_table(result))
    else:
        sys.stdout.write(json.dumps(result, ensure_ascii=False, default=str) + "\n")
    if result.get("ok") is False:  # `audit verify` found problems: the report is on stdout, the verdict is the code
        raise SystemExit(1)


def _without_the_web_framework() -> None:
    """An admin command serves no HTTP, but advanced-alchemy (under the table definitions) imports Litestar's DTO
    module whenever Litestar is installed, which is a third of such a command's start-up. Marked absent for this
    process, advanced-alchemy uses its own stand-in (advanced_alchemy/_typing.py), as without Litestar installed."""
    sys.modules.setdefault("litestar.dto.data_structures", None)  # type: ignore[arg-type]  # None marks it absent


def _database_problem(exc: SQLAlchemyError) -> str:
    """One line for the operator: the driver's own first line, and the usual remedy when the schema is missing."""
    original = getattr(exc, "orig", None) or exc
    first_line = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    hint = (
        " (has 'casebridge db upgrade' been run?)"
        if "no such table" in first_line or "does not exist" in first_line
        else ""
    )
    return f"database error: {first_line}{hint}"


def _fail(message: str, *, code: int = 1) -> NoReturn:
    sys.stderr.write(f"casebridge: error: {message}\n")
    raise SystemExit(code)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="casebridge", description="Inter-agency case exchange.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default=None, help="listen address (default CASEBRIDGE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default CASEBRIDGE_PORT or 8000)")
    serve.add_argument(
        "--workers", type=int, default=1, metavar="N", help="web processes sharing the port (PostgreSQL only for N > 1)"
    )
    worker = commands.add_parser("worker", help="run background Workers in a process of their own (no HTTP)")
    worker.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated: relay,inbox,sealer,letters,reminders,cosigner,peers (default all)",
    )

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="action", required=True)
    db.add_parser("upgrade", help="apply all migrations")

    tenant = commands.add_parser("tenant", help="organisations").add_subparsers(dest="action", required=True)
    create_tenant = tenant.add_parser("create", help="register an organisation and create its key ring")
    create_tenant.add_argument("--slug", required=True)
    create_tenant.add_argument("--name", required=True)
    create_tenant.add_argument("--kind", required=True, help=", ".join(k.value for k in TenantKind))
    create_tenant.add_argument("--region")
    zone_help = f"IANA time zone of the agency's days and deadlines (default {DEFAULT_TIME_ZONE})"
    create_tenant.add_argument("--time-zone", default=DEFAULT_TIME_ZONE, metavar="ZONE", help=zone_help)
    update_tenant = tenant.add_parser("update", help="change an organisation's settings")
    update_tenant.add_argument("--slug", required=True)
    update_tenant.add_argument("--time-zone", required=True, metavar="ZONE", help=zone_help)
    for action in ("suspend", "activate"):
        status = tenant.add_parser(action, help=f"{action} an organisation")
        status.add_argument("--slug", required=True)

    user = commands.add_parser("user", help="staff accounts").add_subparsers(dest="action", required=True)
    create_user = user.add_parser("create", help="create a user; prints a one-time password unless --password-stdin")
    create_user.add_argument("--tenant", required=True, help="tenant slug")
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--role", required=True, action="append", help="repeat for several roles")
    create_user.add_argument("--password-stdin", action="store_true", help="read the initial password from stdin")
    for action, text in (
        ("deactivate", "deactivate a user: their sessions end and they cannot sign in"),
        ("activate", "reactivate a deactivated user"),
        ("reset-second-factor", "make a user enrol a new second factor at next sign-in; their sessions end"),
    ):
        change_user = user.add_parser(action, help=text)
        change_user.add_argument("--tenant", required=True, help="tenant slug")
        change_user.add_argument("--email", required=True)

    client = commands.add_parser("client", help="agency systems").add_subparsers(dest="action", required=True)
    create_client = client.add_parser("create", help="register an API client with its public JWK")
    create_client.add_argument("--tenant", required=True, help="tenant slug")
    create_client.add_argument("--name", required=True)
    create_client.add_argument("--jwk-file", required=True, type=Path)
    create_client.add_argument("--scopes", required=True, help=" ".join(s.value for s in Scope))
    create_client.add_argument("--role", default=Role.SPECIALIST.value)
    revoke_client = client.add_parser("revoke", help="revoke an API client: its tokens stop working at once")
    revoke_client.add_argument("--tenant", required=True, help="tenant slug")
    revoke_client.add_argument("--client-id", required=True)

    keys = commands.add_parser("keys", help="key rings").add_subparsers(dest="action", required=True)
    rotate = keys.add_parser("rotate", help="rotate a tenant's encryption, signing and data keys")
    rotate.add_argument("--tenant", required=True, help="tenant slug")

    audit = commands.add_parser("audit", help="the tamper-evident audit trail").add_subparsers(
        dest="action", required=True
    )
    verify = audit.add_parser(
        "verify", help="re-check the hash chain, the Merkle tree and the signed checkpoints (seals nothing)"
    )
    verify.add_argument(
        "--from-export", type=Path, metavar="FILE", help="verify an export file instead of the database"
    )
    verify.add_argument(
        "--key",
        action="append",
        metavar="VERIFIER_KEY",
        help="trust only this checkpoint key (<origin>+<key id>+<key>; repeatable), not the keys stored with the log",
    )
    export = audit.add_parser("export", help="write the sealed log, its checkpoints and keys to a JSON Lines file")
    export.add_argument("--out", required=True, type=Path, metavar="FILE")
    rename = audit.add_parser(
        "rename-origin", help="give the log a new name from its next checkpoint on (older ones keep theirs)"
    )
    rename.add_argument("--to", required=True, metavar="ORIGIN", help="the new origin, e.g. casebridge.example/audit")

    peers = commands.add_parser("peers", help="other casebridge nodes (CASEBRIDGE_PEERS)").add_subparsers(
        dest="action", required=True
    )
    peers.add_parser("status", help="each configured peer's state, and the envelopes held for them")
    refresh = peers.add_parser("refresh", help="fetch the peers' agencies and keys now (all, or one)")
    refresh.add_argument("name", nargs="?", metavar="NAME", help="a peer's name in the peers file")
    accept = peers.add_parser(
        "accept-keys", help="accept a peer's new keys after checking the change with its operator"
    )
    accept.add_argument("name", metavar="NAME", help="the peer's name in the peers file")
    pin = peers.add_parser("pin", help="print the pin of a TLS certificate, for a peer's entry in the peers file")
    pin.add_argument("--cert", required=True, type=Path, metavar="FILE", help="the certificate, PEM or DER")

    subjects = commands.add_parser("subjects", help="the people in the agencies' cases").add_subparsers(
        dest="action", required=True
    )
    subjects.add_parser("index", help="fill the digests a DPO finds people by, for subjects recorded before them")

    demo = commands.add_parser("demo", help="demonstration data").add_subparsers(dest="action", required=True)
    seed = demo.add_parser("seed", help="create three demo agencies with staff and API clients")
    seed.add_argument("--if-empty", action="store_true", help="do nothing (and succeed) when tenants exist")
    seed.add_argument(
        "--table", action="store_true", help="print the accounts as a table for a person to read, instead of JSON"
    )
    return parser


def _serve(settings: Settings, host: str | None, port: int | None, web_processes: int) -> None:
    from gateway.processes import serve

    if host or port:
        # The flags win over the variables, and the default base URL follows them.
        overrides = {
            "CASEBRIDGE_HOST": host or settings.server.host,
            "CASEBRIDGE_PORT": str(port or settings.server.port),
        }
        settings = Settings.from_env({**os.environ, **overrides})
    serve(settings, web_processes=web_processes)


def _worker(settings: Settings, only: str | None) -> None:
    from gateway.processes import run_worker
    from gateway.settings import worker_names

    try:
        names = None if only is None else worker_names(only)
    except ValueError as exc:
        raise CliError(f"--only: {exc}") from None
    if names == ():
        raise CliError("--only names no Worker to run")
    run_worker(settings, names)


async def _run(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    if (args.command, args.action) == ("db", "upgrade"):
        from gateway.db import create_engine, ensure_data_dir, schema_is_current, upgrade_schema

        # Migrating needs no keys: never create a master key as a side effect of a schema change.
        ensure_data_dir(settings.paths)
        engine = create_engine(settings.database)
        try:
            # Checking reads only the migration scripts; upgrading also loads every table definition, for nothing
            # when the schema is already current.
            if not await schema_is_current(engine):
                await upgrade_schema(engine)
            return {"upgraded": True, "database": engine.url.render_as_string(hide_password=True)}
        finally:
            await engine.dispose()
    if (args.command, args.action) == ("peers", "pin"):
        return _certificate_pin(args.cert)
    if args.command == "audit" and args.action != "rename-origin":
        # Neither the bus nor the master key: verifying needs only public keys, and an export only the database.
        return await _audit(settings, args)
    from gateway import cli_admin

    return await cli_admin.run(settings, args)


def _certificate_pin(path: Path) -> dict[str, Any]:
    """The pin of a certificate file and the line that puts it in a [[peer]] table."""
    from tenants.pinning import spki_pin

    try:
        certificate = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read the certificate file {path}: {exc.strerror}") from exc
    try:
        pin = spki_pin(certificate)
    except ValueError:
        raise CliError(f"{path} is not an X.509 certificate (PEM or DER)") from None
    return {"pin": pin, "line": f'pin = "{pin}"'}


async def _audit(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from audit.export import ExportError, export_database, read_export
    from audit.verifications import Trigger, record_verification
    from audit.verify import verify_database, verify_log
    from gateway.db import create_engine, schema_is_current
    from tenants.clock import SystemClock
    from tenants.persistence import make_sessionmaker, platform_session

    # The log's name comes with the log (the database or the export), never from this process's URL or port; a
    # pinned key must be for one of the names the log has had.
    pinned = _pinned_keys(args.key) if args.action == "verify" and args.key else None
    pinned_names, pinned_keys = pinned if pinned else (set(), None)
    if args.action == "verify" and args.from_export is not None:
        try:
            export = read_export(args.from_export)
        except OSError as exc:
            raise CliError(f"cannot read the export file {args.from_export}: {exc.strerror}") from exc
        except ExportError as exc:
            raise CliError(f"the export file {args.from_export} is damaged: {exc}") from exc
        _check_pinned_names(pinned_names, export.names.origins(), "the exported log")
        return verify_log(
            export.events,
            export.checkpoints,
            origin=export.names,
            public_keys=pinned_keys or export.public_keys,
            cosignatures=export.cosignatures,
            cosigner_keys=export.cosigner_keys,
            review_marks=export.review_marks,
            exported_at=export.written_at,
        ).to_json()
    engine = create_engine(settings.database)
    try:
        if not await schema_is_current(engine):
            raise CliError("the database schema is not up to date; run 'casebridge db upgrade' first")
        sessions = make_sessionmaker(engine)
        # Checked before anything is verified or recorded: a database that holds no log is the wrong database.
        _check_pinned_names(pinned_names, await _log_names(engine), "this database's log")
        now = SystemClock().now()
        if args.action == "export":
            try:
                summary = await export_database(sessions, args.out, exported_at=now)
            except OSError as exc:
                raise CliError(f"cannot write the export file {args.out}: {exc.strerror}") from exc
            except ValueError as exc:  # the log has no name yet: nothing was ever sealed, so there is nothing to export
                raise CliError(str(exc)) from exc
            return summary.to_json()
        result = await verify_database(sessions, now=now, public_keys=pinned_keys)
        # The DPO console shows when the live log was last verified and with what result.
        async with platform_session(sessions) as session, session.begin():
            record_verification(session, result, at=now, trigger=Trigger.CLI)
        return result.to_json()
    finally:
        await engine.dispose()


async def _log_names(engine: AsyncEngine) -> list[str]:
    """The names of the log in the database; CliError when it holds no audit trail at all (no name, no checkpoint,
    no event), which only a database other than the server's does."""
    from sqlalchemy import select

    from audit.identity import load_names
    from audit.models import AuditCheckpoint, AuditEvent
    from tenants.persistence import make_sessionmaker, platform_session

    async with platform_session(make_sessionmaker(engine)) as session:
        names = (await load_names(session)).origins()
        if names:
            return names
        # Events that no sealer has named the log for yet, or checkpoints whose name is gone, are the verifier's to
        # report (unsealed and overdue; not signed under the log's name).
        for column in (AuditCheckpoint.size, AuditEvent.id):
            if await session.scalar(select(column).limit(1)) is not None:
                return names
    database = engine.url.render_as_string(hide_password=True)
    raise CliError(
        f"the database {database} holds no audit trail: no casebridge server has recorded anything in it. Run this "
        "command with the server's CASEBRIDGE_DATABASE_URL (or CASEBRIDGE_DATA_DIR)"
    )


def _check_pinned_names(pinned: set[str], names: Sequence[str], whose: str) -> None:
    if pinned and not pinned <= set(names):
        stranger = sorted(pinned - set(names))[0]
        known = ", ".join(repr(name) for name in names) or "none"
        raise CliError(f"--key is for the log {stranger!r}, but {whose} is named {known}: pin a key of this log")


def _pinned_keys(texts: list[str]) -> tuple[set[str], list[Ed25519PublicKey]]:
    """The log names and keys of the --key verifier keys (a renamed log's key may be pinned under any of its names)."""
    from audit.checkpoint import CheckpointFormatError, parse_verifier_key

    names, keys = set(), []
    for text in texts:
        try:
            name, key = parse_verifier_key(text)
        except CheckpointFormatError as exc:
            raise CliError(f"--key {text!r} is not a verifier key: {exc.detail}") from exc
        names.add(name)
        keys.append(key)
    return names, keys


__all__ = ["main"]
