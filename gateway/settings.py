"""Settings, one dataclass per concern, read once from `CASEBRIDGE_*` environment variables."""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
import uuid
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from gateway.workers import WorkerName
from tenants.peers import Peer, is_loopback, pin_problem, url_problem


class SettingsError(ValueError):
    """A variable is present but unusable; the message names it."""


@dataclass(frozen=True, slots=True)
class PathSettings:
    data_dir: Path
    """CASEBRIDGE_DATA_DIR: directory of the embedded database, the embedded NATS store and the default master key,
    relative to the working directory unless absolute."""
    master_key_file: Path
    """CASEBRIDGE_MASTER_KEY_FILE: the file of 32 random bytes that wraps every private key, readable by its owner
    only; unset, DATA_DIR/master.key, which casebridge creates on first start (a file named here must exist)."""
    master_key_generated: bool
    """True when the master key file is the embedded default, which casebridge may create on first start."""


@dataclass(frozen=True, slots=True)
class DatabaseSettings:
    url: str
    """CASEBRIDGE_DATABASE_URL: SQLAlchemy async URL; for PostgreSQL postgresql+asyncpg://USER:PASSWORD@HOST/DB."""
    pool_size: int
    """CASEBRIDGE_DB_POOL_SIZE: PostgreSQL connections kept by each web or worker process; the pool is fixed, so
    under a burst requests wait for a connection rather than open more."""

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")


@dataclass(frozen=True, slots=True)
class BusSettings:
    nats_url: str | None
    """CASEBRIDGE_NATS_URL: external NATS server(s), comma-separated (nats:// or tls://, optionally with
    user:password@); unset, casebridge starts an embedded nats-server as a child process."""
    store_dir: Path
    """JetStream store of the embedded server: DATA_DIR/nats."""
    stream_replicas: int
    """CASEBRIDGE_NATS_REPLICAS: JetStream replicas of casebridge's streams; 3 with a 3-node cluster."""
    hosted_tenants: tuple[uuid.UUID, ...] | None = None
    """CASEBRIDGE_NATS_HOSTED_TENANTS: the tenant ids (comma-separated) whose envelopes this node's inbox consumes,
    one durable consumer each; unset, every tenant in this node's database. Set it on an agency's own node."""
    leaf_tenants: tuple[uuid.UUID, ...] = ()
    """CASEBRIDGE_NATS_LEAF_TENANTS: on the hub, the tenant ids (comma-separated) hosted by agencies' own nodes: the
    hub creates their inbox consumers on its stream and never consumes them."""
    hub_api: str | None = None
    """CASEBRIDGE_NATS_HUB_API: on an agency's own node, the prefix under which its NATS account imports the hub's
    JetStream API (hub.$JS.API with deploy/nats/hub.conf); unset, this node owns the envelope stream."""

    def __post_init__(self) -> None:
        if self.hub_api is not None and self.leaf_tenants:
            raise SettingsError(
                "CASEBRIDGE_NATS_LEAF_TENANTS is for the hub and CASEBRIDGE_NATS_HUB_API for an agency's node; set one"
            )


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str
    """CASEBRIDGE_HOST: address `casebridge serve` listens on (`--host` overrides it)."""
    port: int
    """CASEBRIDGE_PORT: port `casebridge serve` listens on (`--port` overrides it)."""
    base_url: str
    """CASEBRIDGE_BASE_URL: public URL of this node: the OAuth issuer and the base of the token endpoint and the
    JWKS URLs; https:// unless the host is localhost or a loopback address."""
    max_body_bytes: int
    """CASEBRIDGE_MAX_BODY_BYTES: largest request body accepted; a larger one gets 413 (document uploads have
    their own limit, CASEBRIDGE_MAX_DOCUMENT_BYTES)."""

    @property
    def issuer(self) -> str:
        return self.base_url

    @property
    def token_endpoint(self) -> str:
        return f"{self.base_url}/oauth/token"

    @property
    def secure_cookies(self) -> bool:
        return urlsplit(self.base_url).scheme == "https"


@dataclass(frozen=True, slots=True)
class TokenSettings:
    access_token_ttl: dt.timedelta
    """CASEBRIDGE_ACCESS_TOKEN_TTL: seconds an access token lives."""
    assertion_max_age: dt.timedelta
    """CASEBRIDGE_ASSERTION_MAX_AGE: how far ahead a client assertion's exp may be, in seconds."""
    clock_skew: dt.timedelta
    """CASEBRIDGE_CLOCK_SKEW: leeway in seconds when checking exp and iat of assertions and tokens."""
    key_grace: dt.timedelta
    """CASEBRIDGE_KEY_GRACE_DAYS: days a rotated encryption or signing key stays usable for decryption and
    verification."""


@dataclass(frozen=True, slots=True)
class SessionSettings:
    lifetime: dt.timedelta
    """CASEBRIDGE_SESSION_HOURS: absolute lifetime of a staff session in hours (the default is one working day)."""
    idle: dt.timedelta
    """CASEBRIDGE_SESSION_IDLE_MINUTES: a staff session unused for this many minutes ends."""
    pending: dt.timedelta
    """CASEBRIDGE_SIGNIN_MINUTES: minutes allowed from a correct password to the second factor or its enrolment;
    the session's lifetime starts only after the second factor."""
    lockout_failures: int
    """CASEBRIDGE_LOCKOUT_FAILURES: failed passwords or second-factor codes in a row that lock an account."""
    lockout_duration: dt.timedelta
    """CASEBRIDGE_LOCKOUT_MINUTES: how long a locked account stays locked, in minutes."""
    invitation_lifetime: dt.timedelta
    """CASEBRIDGE_INVITATION_HOURS: how long an invitation link from the tenant administrator works, in hours."""


@dataclass(frozen=True, slots=True)
class RateLimitSettings:
    requests_per_minute: int
    """CASEBRIDGE_RATE_LIMIT_PER_MINUTE: requests per minute per API client or staff user, or per client address
    when anonymous; the health probes and /schema are exempt."""


@dataclass(frozen=True, slots=True)
class ExchangeSettings:
    self_consent_age: int
    """CASEBRIDGE_SELF_CONSENT_AGE: age from which a person consents for themselves; below it a parent, guardian or
    representative consents, from it the person or their guardian or representative, no longer a parent."""
    max_document_bytes: int
    """CASEBRIDGE_MAX_DOCUMENT_BYTES: largest document (signed consent form, attachment) POST /api/v1/documents
    accepts; a larger one gets 400."""


@dataclass(frozen=True, slots=True)
class Settings:
    paths: PathSettings
    database: DatabaseSettings
    bus: BusSettings
    server: ServerSettings
    tokens: TokenSettings
    sessions: SessionSettings
    rate_limits: RateLimitSettings
    exchange: ExchangeSettings
    audit: AuditSettings
    mail: MailSettings = field(default_factory=lambda: MailSettings.from_env(_Env({})))
    reminders: ReminderSettings = field(default_factory=lambda: ReminderSettings.from_env(_Env({})))
    letters: LetterSettings = field(default_factory=lambda: LetterSettings.from_env(_Env({})))
    processes: ProcessSettings = field(default_factory=lambda: ProcessSettings.from_env(_Env({})))
    operations: OperationsSettings = field(default_factory=lambda: OperationsSettings.from_env(_Env({})))
    peers: PeerSettings = field(default_factory=lambda: PeerSettings.from_env(_Env({})))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Env(os.environ if environ is None else environ)
        data_dir = Path(env.text("CASEBRIDGE_DATA_DIR", "var")).resolve()
        key_file = env.optional("CASEBRIDGE_MASTER_KEY_FILE")
        host = env.text("CASEBRIDGE_HOST", "127.0.0.1")
        port = env.integer("CASEBRIDGE_PORT", 8000, low=1, high=65535)
        base_url = env.text("CASEBRIDGE_BASE_URL", f"http://{host}:{port}").rstrip("/")
        _check_base_url(base_url)
        return cls(
            paths=PathSettings(
                data_dir=data_dir,
                master_key_file=Path(key_file).resolve() if key_file else data_dir / "master.key",
                master_key_generated=key_file is None,
            ),
            database=DatabaseSettings(
                url=env.text("CASEBRIDGE_DATABASE_URL", f"sqlite+aiosqlite:///{data_dir / 'casebridge.db'}"),
                pool_size=env.integer("CASEBRIDGE_DB_POOL_SIZE", 10, low=1, high=200),
            ),
            bus=BusSettings(
                nats_url=env.optional("CASEBRIDGE_NATS_URL"),
                store_dir=data_dir / "nats",
                stream_replicas=env.integer("CASEBRIDGE_NATS_REPLICAS", 1, low=1, high=5),
                hosted_tenants=_tenant_ids(
                    "CASEBRIDGE_NATS_HOSTED_TENANTS", env.optional("CASEBRIDGE_NATS_HOSTED_TENANTS")
                ),
                leaf_tenants=_tenant_ids("CASEBRIDGE_NATS_LEAF_TENANTS", env.optional("CASEBRIDGE_NATS_LEAF_TENANTS"))
                or (),
                hub_api=env.optional("CASEBRIDGE_NATS_HUB_API"),
            ),
            server=ServerSettings(
                host=host,
                port=port,
                base_url=base_url,
                max_body_bytes=env.integer("CASEBRIDGE_MAX_BODY_BYTES", 1024 * 1024, low=1024, high=512 * 1024 * 1024),
            ),
            tokens=TokenSettings(
                access_token_ttl=dt.timedelta(
                    seconds=env.integer("CASEBRIDGE_ACCESS_TOKEN_TTL", 300, low=30, high=86400)
                ),
                assertion_max_age=dt.timedelta(
                    seconds=env.integer("CASEBRIDGE_ASSERTION_MAX_AGE", 3600, low=30, high=86400)
                ),
                clock_skew=dt.timedelta(seconds=env.integer("CASEBRIDGE_CLOCK_SKEW", 60, low=0, high=600)),
                key_grace=dt.timedelta(days=env.integer("CASEBRIDGE_KEY_GRACE_DAYS", 30, low=0, high=3650)),
            ),
            sessions=SessionSettings(
                lifetime=dt.timedelta(hours=env.integer("CASEBRIDGE_SESSION_HOURS", 10, low=1, high=24 * 30)),
                idle=dt.timedelta(minutes=env.integer("CASEBRIDGE_SESSION_IDLE_MINUTES", 30, low=1, high=24 * 60)),
                pending=dt.timedelta(minutes=env.integer("CASEBRIDGE_SIGNIN_MINUTES", 15, low=1, high=120)),
                lockout_failures=env.integer("CASEBRIDGE_LOCKOUT_FAILURES", 5, low=1, high=100),
                lockout_duration=dt.timedelta(
                    minutes=env.integer("CASEBRIDGE_LOCKOUT_MINUTES", 15, low=1, high=24 * 60)
                ),
                invitation_lifetime=dt.timedelta(
                    hours=env.integer("CASEBRIDGE_INVITATION_HOURS", 72, low=1, high=24 * 30)
                ),
            ),
            exchange=ExchangeSettings(
                self_consent_age=env.integer("CASEBRIDGE_SELF_CONSENT_AGE", 18, low=14, high=21),
                max_document_bytes=env.integer(
                    "CASEBRIDGE_MAX_DOCUMENT_BYTES", 2 * 1024 * 1024, low=1024, high=2 * 1024 * 1024
                ),
            ),
            rate_limits=RateLimitSettings(
                requests_per_minute=env.integer("CASEBRIDGE_RATE_LIMIT_PER_MINUTE", 600, low=1, high=1_000_000),
            ),
            audit=AuditSettings.from_env(env),
            mail=MailSettings.from_env(env),
            reminders=ReminderSettings.from_env(env),
            letters=LetterSettings.from_env(env),
            processes=ProcessSettings.from_env(env),
            operations=OperationsSettings.from_env(env),
            peers=PeerSettings.from_env(env),
        )


def _check_base_url(base_url: str) -> None:
    """OAuth 2 requires TLS (RFC 6749 §1.6); plain http is accepted only for a node on this machine."""
    parts = urlsplit(base_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise SettingsError("CASEBRIDGE_BASE_URL must be an http:// or https:// URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise SettingsError("CASEBRIDGE_BASE_URL must use https:// unless the node is reached on localhost")


class _Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def optional(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def text(self, name: str, default: str) -> str:
        return self.optional(name) or default

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
        return value


def _tenant_ids(name: str, raw: str | None) -> tuple[uuid.UUID, ...] | None:
    """Tenant ids separated by commas (variable `name`); None when unset."""
    if raw is None:
        return None
    try:
        return tuple(uuid.UUID(part.strip()) for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"{name} must be tenant ids separated by commas, got {raw!r}") from None


def _cosigners(value: str) -> tuple[str, ...] | None:
    """None for every agency, () for none, else the listed slugs."""
    value = value.strip()
    if value == "*":
        return None
    if value.casefold() == "none":
        return ()
    slugs = tuple(s.strip() for s in value.split(",") if s.strip())
    if not slugs or any(not re.fullmatch(r"[a-z0-9-]{1,63}", s) for s in slugs):
        raise SettingsError(
            f'CASEBRIDGE_AUDIT_COSIGNERS must be "*", "none" or agency slugs separated by commas, got {value!r}'
        )
    return slugs


@dataclass(frozen=True, slots=True)
class AuditSettings:
    bulk_subjects_per_hour: int
    """CASEBRIDGE_AUDIT_BULK_SUBJECTS_PER_HOUR: distinct subjects one actor may read within an hour before the DPO's
    anomaly list flags a bulk read."""
    off_hours: tuple[int, int]
    """CASEBRIDGE_AUDIT_OFF_HOURS: local hours "FROM-TO" in which reads of subject data are flagged; FROM > TO wraps
    past midnight; "0-0" turns the rule off."""
    timezone: str
    """CASEBRIDGE_AUDIT_TIMEZONE: IANA time zone of the off-hours window."""
    denials_per_hour: int
    """CASEBRIDGE_AUDIT_DENIALS_PER_HOUR: refusals of one actor within an hour before the anomaly list flags them."""
    cosigners: tuple[str, ...] | None
    """CASEBRIDGE_AUDIT_COSIGNERS: the agencies (slugs, comma-separated) whose node this is, which co-sign each audit
    checkpoint they see on the bus after checking it extends the last one they co-signed, and each checkpoint a peer
    node sends to POST /witness/add-checkpoint; "*" for every active agency, "none" to co-sign nothing here."""

    @classmethod
    def from_env(cls, env: _Env) -> AuditSettings:
        timezone = env.text("CASEBRIDGE_AUDIT_TIMEZONE", "Europe/Moscow")
        try:
            zoneinfo.ZoneInfo(timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise SettingsError(f"CASEBRIDGE_AUDIT_TIMEZONE must be an IANA time zone, got {timezone!r}") from None
        return cls(
            bulk_subjects_per_hour=env.integer("CASEBRIDGE_AUDIT_BULK_SUBJECTS_PER_HOUR", 50, low=1, high=1_000_000),
            off_hours=_hour_range(env.text("CASEBRIDGE_AUDIT_OFF_HOURS", "20-08")),
            timezone=timezone,
            denials_per_hour=env.integer("CASEBRIDGE_AUDIT_DENIALS_PER_HOUR", 10, low=1, high=1_000_000),
            cosigners=_cosigners(env.text("CASEBRIDGE_AUDIT_COSIGNERS", "*")),
        )


def _hour_range(raw: str) -> tuple[int, int]:
    start, sep, end = raw.partition("-")
    if sep and start.strip().isdigit() and end.strip().isdigit() and int(start) < 24 and int(end) < 24:
        return int(start), int(end)
    raise SettingsError(f"CASEBRIDGE_AUDIT_OFF_HOURS must be two hours 0-23 as FROM-TO (e.g. 20-08), got {raw!r}")


@dataclass(frozen=True, slots=True)
class MailSettings:
    smtp_host: str | None
    """CASEBRIDGE_SMTP_HOST: the mail server deadline reminders and invitation links go through; unset, no email is
    sent (reminders still show in GET /api/v1/reminders, and the administrator hands each invitation link over)."""
    smtp_port: int
    """CASEBRIDGE_SMTP_PORT: the mail server's port (the default is SMTP submission)."""
    sender: str | None
    """CASEBRIDGE_SMTP_FROM: the From address of reminder and invitation emails; required with CASEBRIDGE_SMTP_HOST."""
    username: str | None
    """CASEBRIDGE_SMTP_USER: the account to log in with; set it and CASEBRIDGE_SMTP_PASSWORD both or neither; unset,
    no login."""
    password: str | None = field(repr=False)
    """CASEBRIDGE_SMTP_PASSWORD: that account's password."""
    starttls: bool
    """CASEBRIDGE_SMTP_STARTTLS: upgrade the connection with STARTTLS before anything else; false is refused with a
    password unless the server is on loopback."""

    @property
    def enabled(self) -> bool:
        return self.smtp_host is not None

    @classmethod
    def from_env(cls, env: _Env) -> MailSettings:
        host = env.optional("CASEBRIDGE_SMTP_HOST")
        sender = env.optional("CASEBRIDGE_SMTP_FROM")
        username = env.optional("CASEBRIDGE_SMTP_USER")
        password = env.optional("CASEBRIDGE_SMTP_PASSWORD")
        starttls = _flag(env, "CASEBRIDGE_SMTP_STARTTLS", default=True)
        if host is not None and (sender is None or "@" not in sender):
            raise SettingsError("CASEBRIDGE_SMTP_FROM must be an email address when CASEBRIDGE_SMTP_HOST is set")
        if (username is None) != (password is None):
            raise SettingsError("CASEBRIDGE_SMTP_USER and CASEBRIDGE_SMTP_PASSWORD must be set together")
        if host is not None and username is not None and not starttls and not is_loopback(host):
            raise SettingsError(
                "CASEBRIDGE_SMTP_STARTTLS=false would send the SMTP password in clear to a remote "
                "server; enable STARTTLS or use a relay on this machine"
            )
        return cls(
            smtp_host=host,
            smtp_port=env.integer("CASEBRIDGE_SMTP_PORT", 587, low=1, high=65535),
            sender=sender,
            username=username,
            password=password,
            starttls=starttls,
        )


@dataclass(frozen=True, slots=True)
class ReminderSettings:
    lead: dt.timedelta
    """CASEBRIDGE_REMINDER_LEAD_HOURS: hours before respond_by or complete_by from which a reminder appears and is
    emailed."""
    interval: dt.timedelta
    """CASEBRIDGE_REMINDER_INTERVAL_SECONDS: seconds between the reminders Worker's looks for reminders to email."""
    escalate_after_days: int
    """CASEBRIDGE_ESCALATE_AFTER_DAYS: full days, in the agency's time zone, a referral stays overdue before it is
    escalated to the agency's supervisors (shown on the dashboards and emailed to them); 0 escalates on the first
    day it is overdue."""

    @classmethod
    def from_env(cls, env: _Env) -> ReminderSettings:
        return cls(
            lead=dt.timedelta(hours=env.integer("CASEBRIDGE_REMINDER_LEAD_HOURS", 48, low=1, high=24 * 60)),
            interval=dt.timedelta(
                seconds=env.integer("CASEBRIDGE_REMINDER_INTERVAL_SECONDS", 300, low=1, high=24 * 3600)
            ),
            escalate_after_days=env.integer("CASEBRIDGE_ESCALATE_AFTER_DAYS", 1, low=0, high=60),
        )


def _flag(env: _Env, name: str, *, default: bool) -> bool:
    raw = env.optional(name)
    if raw is None:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True, slots=True)
class LetterSettings:
    pdf_processes: int
    """CASEBRIDGE_PDF_PROCESSES: processes, beside each casebridge process that needs them, that lay out every PDF
    (letters, subject access reports, plan summaries); 0 lays them out in a thread of the casebridge process itself,
    one at a time, competing with requests for the interpreter."""

    @classmethod
    def from_env(cls, env: _Env) -> LetterSettings:
        processes = env.integer("CASEBRIDGE_PDF_PROCESSES", os.cpu_count() or 1, low=0, high=256)
        return cls(pdf_processes=processes)


@dataclass(frozen=True, slots=True)
class ProcessSettings:
    in_process_workers: tuple[WorkerName, ...]
    """CASEBRIDGE_IN_PROCESS_WORKERS: the Workers each `casebridge serve` process runs beside HTTP: "all" (the
    embedded layout, everything in one process), "none" when `casebridge worker` processes do the background work,
    or names separated by commas (relay, inbox, sealer, letters, reminders, cosigner, peers)."""

    @classmethod
    def from_env(cls, env: _Env) -> ProcessSettings:
        raw = env.text("CASEBRIDGE_IN_PROCESS_WORKERS", "all")
        try:
            names = worker_names(raw)
        except ValueError as exc:
            raise SettingsError(f"CASEBRIDGE_IN_PROCESS_WORKERS: {exc}") from None
        return cls(in_process_workers=names)


def worker_names(raw: str) -> tuple[WorkerName, ...]:
    """ "all", "none" or names separated by commas, as Workers in their start order; ValueError names a wrong one."""
    value = raw.strip().casefold()
    if value == "all":
        return tuple(WorkerName)
    if value == "none":
        return ()
    asked = {name.strip() for name in value.split(",") if name.strip()}
    unknown = sorted(asked - {w.value for w in WorkerName})
    if unknown or not asked:
        known = ", ".join(w.value for w in WorkerName)
        raise ValueError(f'expected "all", "none" or names from {known}; got {raw.strip()!r}')
    return tuple(w for w in WorkerName if w.value in asked)


LOG_FORMATS = ("json", "text")


@dataclass(frozen=True, slots=True)
class OperationsSettings:
    log_format: str
    """CASEBRIDGE_LOG_FORMAT: "json" writes one JSON object per log line (for the journal and log collectors);
    "text" writes plain lines for reading in a terminal during development."""
    metrics_token: str | None = field(repr=False)
    """CASEBRIDGE_METRICS_TOKEN: the bearer token GET /metrics requires, at least 16 characters; unset, /metrics
    answers only clients that connect from loopback and came through no proxy."""

    @classmethod
    def from_env(cls, env: _Env) -> OperationsSettings:
        log_format = env.text("CASEBRIDGE_LOG_FORMAT", "json").casefold()
        if log_format not in LOG_FORMATS:
            raise SettingsError(f'CASEBRIDGE_LOG_FORMAT must be "json" or "text", got {log_format!r}')
        token = env.optional("CASEBRIDGE_METRICS_TOKEN")
        if token is not None and len(token) < 16:
            raise SettingsError("CASEBRIDGE_METRICS_TOKEN must be at least 16 characters long")
        return cls(log_format=log_format, metrics_token=token)


@dataclass(frozen=True, slots=True)
class PeerSettings:
    file: Path | None
    """CASEBRIDGE_PEERS: a TOML file naming the other casebridge nodes whose agencies this node exchanges with, one
    `[[peer]]` table each with `name` (the operator's name for the node), `url` (its base URL: https://, or http://
    only for a peer on this machine) and `pin` (`sha256/` and the base64 SHA-256 of its TLS certificate's
    SubjectPublicKeyInfo, as `casebridge peers pin --cert FILE` prints it; required for https); unset, no peers."""
    peers: tuple[Peer, ...]
    """The peers the file names, in its order."""
    refresh_interval: dt.timedelta = dt.timedelta(minutes=5)
    """CASEBRIDGE_PEER_REFRESH_SECONDS: seconds between the peers Worker's fetches of each peer's agencies and keys
    (and releases of envelopes held for them)."""

    def named(self, name: str) -> Peer | None:
        return next((peer for peer in self.peers if peer.name == name), None)

    @classmethod
    def from_env(cls, env: _Env) -> PeerSettings:
        raw = env.optional("CASEBRIDGE_PEERS")
        interval = dt.timedelta(seconds=env.integer("CASEBRIDGE_PEER_REFRESH_SECONDS", 300, low=1, high=24 * 3600))
        if raw is None:
            return cls(file=None, peers=(), refresh_interval=interval)
        path = Path(raw).resolve()
        try:
            with path.open("rb") as file:
                document = tomllib.load(file)
        except OSError as exc:
            raise SettingsError(
                f"CASEBRIDGE_PEERS: cannot read {path} ({exc.strerror or type(exc).__name__})"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"CASEBRIDGE_PEERS: {path} is not valid TOML ({exc})") from None
        return cls(file=path, peers=peers_of(document, source=f"CASEBRIDGE_PEERS ({path})"), refresh_interval=interval)


_PEER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_PEER_KEYS = frozenset({"name", "url", "pin"})


def peers_of(document: Mapping[str, object], *, source: str) -> tuple[Peer, ...]:
    """The `[[peer]]` tables of a parsed peers file; SettingsError names the table and the problem."""
    unknown = sorted(set(document) - {"peer"})
    if unknown:
        raise SettingsError(f"{source}: unknown top-level key {unknown[0]!r}; the file holds [[peer]] tables only")
    tables = document.get("peer", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise SettingsError(f"{source}: peer must be an array of tables, written [[peer]]")
    peers: list[Peer] = []
    for number, table in enumerate(tables, start=1):
        peer = _peer(table, where=f"{source}: [[peer]] number {number}")
        if any(p.name == peer.name for p in peers):
            raise SettingsError(f"{source}: the peer name {peer.name!r} is used twice")
        if any(p.url == peer.url for p in peers):
            raise SettingsError(f"{source}: peers {peer.name!r} and another have the same url")
        peers.append(peer)
    return tuple(peers)


def _peer(table: Mapping[str, object], *, where: str) -> Peer:
    unknown = sorted(set(table) - _PEER_KEYS)
    if unknown:
        raise SettingsError(f"{where}: unknown key {unknown[0]!r} (expected name, url and pin)")
    name, url, pin = table.get("name"), table.get("url"), table.get("pin")
    if not isinstance(name, str) or not _PEER_NAME.fullmatch(name):
        raise SettingsError(f"{where}: name must be 1-63 lower-case letters, digits and hyphens")
    where = f"{where} ({name})"
    if not isinstance(url, str):
        raise SettingsError(f"{where}: url is required, a string")
    url = url.rstrip("/")
    problem = url_problem(url)
    if problem is not None:
        raise SettingsError(f"{where}: {problem}")
    if pin is not None and not isinstance(pin, str):
        raise SettingsError(f"{where}: pin must be a string")
    if url.startswith("https://"):
        if pin is None:
            raise SettingsError(f'{where}: an https peer needs a pin ("casebridge peers pin --cert FILE" prints it)')
        problem = pin_problem(pin)
        if problem is not None:
            raise SettingsError(f"{where}: {problem}")
    elif pin is not None:
        raise SettingsError(f"{where}: a pin applies to https only; this peer's url is plain http")
    return Peer(name=name, url=url, pin=pin)
