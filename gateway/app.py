"""The composition root: builds every collaborator from Settings and assembles the Litestar application."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Collection
from typing import Any

from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from audit.events import pseudonym_key
from audit.peer_cosign import Submitter
from audit.peer_witness import WitnessService
from audit.sealer import STOP_GRACE_S as SEALER_GRACE_S
from audit.sealer import Publish, Sealer, log_origin
from audit.services import AuditLog
from audit.witness import Witness
from exchange.cases.datakeys import DataKeys
from exchange.cases.lookup import PersonIndex, lookup_key_purpose
from exchange.cases.policy import AgeRules
from exchange.deps import ExchangeDeps
from exchange.letters.render import TypstRenderer
from exchange.letters.worker import LetterWorker
from exchange.plans.mail import SmtpMailer, SmtpServer
from exchange.plans.reminders import ReminderMail
from exchange.transport.inbox import Inbox
from exchange.transport.jetstream import STOP_GRACE_S as INBOX_GRACE_S
from exchange.transport.jetstream import JetStreamPublisher, TenantInboxes
from exchange.transport.relay import OutboxRelay
from gateway.access_log import RequestObserver
from gateway.audit_capture import AuditOutcomes
from gateway.audit_runtime import CheckpointWitnessing
from gateway.auth.csrf import CsrfTokens, SessionBoundCsrf
from gateway.auth.guards import GUARDS
from gateway.auth.middleware import PrincipalMiddleware, session_cookie_name
from gateway.auth.oauth import TokenEndpoint
from gateway.auth.tokens import AccessTokenVerifier
from gateway.bodies import BoundedRequest, StrictBodySchemas, check_request
from gateway.bus import AUDIT_STREAM, Bus
from gateway.controllers import health, metadata, metrics, oauth, witnessing
from gateway.controllers.audit import AuditController, TrailController
from gateway.controllers.cases import CaseController
from gateway.controllers.context import CONTEXT, CONTEXT_PROBLEMS, PRINCIPAL
from gateway.controllers.directory import DirectoryController
from gateway.controllers.plans import PlanController, ReminderController
from gateway.controllers.referrals import ReferralController
from gateway.controllers.reports import ReportController
from gateway.db import create_engine, ensure_data_dir, load_master_key
from gateway.letter_runtime import STOP_GRACE_S as LETTERS_GRACE_S
from gateway.letter_runtime import LetterLayout
from gateway.metrics import add_standard_gauges
from gateway.peer_witnessing import PeerClients
from gateway.peering import PeerRefresh
from gateway.problems import EXCEPTION_HANDLERS, PROBLEM_DETAILS, document_problems
from gateway.ratelimit import rate_limit_config
from gateway.request_id import add_request_id
from gateway.runtime import Runtime
from gateway.settings import MailSettings, Settings
from gateway.web import TEMPLATE_DIR, WEB_ROUTES, schema_viewers
from gateway.web.errors import BrowserErrorPages
from gateway.web.i18n import configure_templates
from gateway.workers import Worker, WorkerName, Workers
from tenants.clock import Clock, SystemClock
from tenants.keys import KeyRing, PublishedKeys
from tenants.models import PlatformKeyUse
from tenants.persistence import make_sessionmaker, platform_session
from tenants.pinning import pinned_client
from tenants.services import LockoutPolicy
from tenants.staff_sessions import SessionPolicy

RELAY, INBOX, SEALER = WorkerName.RELAY, WorkerName.INBOX, WorkerName.SEALER
LETTERS, REMINDERS, COSIGNER = WorkerName.LETTERS, WorkerName.REMINDERS, WorkerName.COSIGNER
PEERS = WorkerName.PEERS
# A relay pass being cut short is safe (unmarked envelopes are published again and deduplicated); a reminder being
# handed to the mail server is let finish, so its row records it as sent; a co-signature rolls back whole.
RELAY_GRACE_S, REMINDERS_GRACE_S, COSIGNER_GRACE_S = 5.0, 10.0, 2.0
PEERS_GRACE_S = 5.0  # a refresh rolls back whole; a release is the inbox's, idempotent by envelope id

API_VERSION = "1.0.0"
OPENAPI_PATH = "/schema"


def build_runtime(
    settings: Settings, *, clock: Clock | None = None, workers: Collection[WorkerName] | None = None
) -> Runtime:
    """Every collaborator of one process; `workers` overrides which Workers it runs (default: the settings')."""
    ensure_data_dir(settings.paths)
    clock = clock or SystemClock()
    master_key = load_master_key(settings.paths)
    engine = create_engine(settings.database)
    sessions = make_sessionmaker(engine)
    keyring = KeyRing(master_key, clock, grace=settings.tokens.key_grace)
    exchange = ExchangeDeps(
        keyring=keyring,
        published=PublishedKeys(clock),
        datakeys=DataKeys(keyring),
        clock=clock,
        age_rules=AgeRules(self_consent_age=settings.exchange.self_consent_age),
        audit=AuditLog(clock, lambda tenant_id: pseudonym_key(master_key, tenant_id)),
        letters=TypstRenderer(processes=settings.letters.pdf_processes),
        persons=PersonIndex(lambda tenant_id: master_key.derive(lookup_key_purpose(tenant_id))),
    )

    async def token_keys() -> list[dict[str, Any]]:
        async with platform_session(sessions) as session:
            return [k.public_jwk for k in await keyring.usable_platform_keys(session, PlatformKeyUse.ACCESS_TOKEN)]

    bus = Bus(
        nats_url=settings.bus.nats_url,
        store_dir=settings.bus.store_dir,
        stream_replicas=settings.bus.stream_replicas,
        hub_api=settings.bus.hub_api,
    )
    origin = log_origin(settings.server.base_url)
    mailer = _smtp_mailer(settings.mail)
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        clock=clock,
        master_key=master_key,
        keyring=keyring,
        token_endpoint=TokenEndpoint(
            server=settings.server,
            tokens=settings.tokens,
            sessions=sessions,
            keyring=keyring,
            clock=clock,
            audit=exchange.audit,
        ),
        token_verifier=AccessTokenVerifier(
            issuer=settings.server.issuer,
            leeway_seconds=int(settings.tokens.clock_skew.total_seconds()),
            load_keys=token_keys,
        ),
        bus=bus,
        lockout=LockoutPolicy(settings.sessions.lockout_failures, settings.sessions.lockout_duration),
        session_policy=SessionPolicy(settings.sessions.lifetime, settings.sessions.idle, settings.sessions.pending),
        exchange=exchange,
        inbox=Inbox(sessions, exchange, on_outbox=lambda: runtime.workers.wake(RELAY)),
        sealer=Sealer(sessions, keyring, clock, origin=origin, publish=_publisher(bus)),
        reminders=ReminderMail(
            sessions,
            clock,
            mailer,
            deps=exchange,
            lead=settings.reminders.lead,
            escalate_after_days=settings.reminders.escalate_after_days,
            base_url=settings.server.base_url,
            every=settings.reminders.interval,
        ),
        mailer=mailer,
    )
    if settings.peers.peers:
        runtime.peer_clients = PeerClients(settings.peers.peers, pinned_client)
        runtime.peer_witness = WitnessService(
            sessions, keyring, clock, exchange.audit, runtime.peer_clients.logs(), cosigners=settings.audit.cosigners
        )
    runtime.workers = _workers(runtime, settings.processes.in_process_workers if workers is None else workers)
    add_standard_gauges(runtime)
    return runtime


def _workers(runtime: Runtime, names: Collection[WorkerName]) -> Workers:
    """The Workers this process runs, in start order. Reminders and co-signing run only where they are set up: the
    co-signer where agencies here co-sign or peers' witnesses are to be asked."""
    settings, sessions, bus = runtime.settings, runtime.sessions, runtime.bus
    cosigners = settings.audit.cosigners
    jobs: dict[WorkerName, Worker] = {
        RELAY: Worker(RELAY, OutboxRelay(sessions, JetStreamPublisher(bus), runtime.clock), grace_s=RELAY_GRACE_S),
        INBOX: Worker(
            INBOX,
            TenantInboxes(
                bus,
                runtime.inbox.receive_batch,
                runtime.consumed_tenants,
                prepared=settings.bus.leaf_tenants,
                create=bus.owns_envelope_stream,
            ),
            grace_s=INBOX_GRACE_S,
        ),
        SEALER: Worker(SEALER, runtime.sealer, grace_s=SEALER_GRACE_S, healthy=lambda: runtime.sealer.status().healthy),
        LETTERS: Worker(
            LETTERS,
            LetterLayout(LetterWorker(sessions, runtime.exchange, on_stored=lambda: runtime.workers.wake(RELAY))),
            grace_s=LETTERS_GRACE_S,
        ),
    }
    if runtime.reminders.enabled:
        jobs[REMINDERS] = Worker(REMINDERS, runtime.reminders, grace_s=REMINDERS_GRACE_S)
    if settings.peers.peers:
        job = PeerRefresh(
            sessions,
            runtime.clock,
            settings.peers.peers,
            published=runtime.exchange.published,
            receive_batch=runtime.inbox.receive_batch,
            every_s=settings.peers.refresh_interval.total_seconds(),
        )
        jobs[PEERS] = Worker(PEERS, job, grace_s=PEERS_GRACE_S)
    peers = runtime.peer_clients
    if cosigners != () or peers is not None:
        witness = (
            Witness(sessions, runtime.keyring, runtime.clock, runtime.exchange.audit, cosigners=cosigners)
            if cosigners != ()
            else None
        )
        submitter = None if peers is None else Submitter(sessions, runtime.clock, peers.witnesses())
        jobs[COSIGNER] = Worker(COSIGNER, CheckpointWitnessing(bus, witness, submitter), grace_s=COSIGNER_GRACE_S)
    return Workers((jobs[name] for name in names if name in jobs), remote_wake=bus.wake_elsewhere)


def _smtp_mailer(settings: MailSettings) -> SmtpMailer | None:
    if settings.smtp_host is None or settings.sender is None:
        return None
    return SmtpMailer(
        SmtpServer(
            host=settings.smtp_host,
            port=settings.smtp_port,
            sender=settings.sender,
            username=settings.username,
            password=settings.password,
            starttls=settings.starttls,
        )
    )


def create_app(settings: Settings, *, clock: Clock | None = None) -> Litestar:
    runtime = build_runtime(settings, clock=clock)
    csrf = CsrfTokens(
        secret=_derived_secret(runtime, "csrf").encode(),
        session_cookie=session_cookie_name(runtime),
        secure_cookie=settings.server.secure_cookies,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        try:
            await runtime.start()
            yield
        finally:
            await runtime.stop()

    app = Litestar(
        route_handlers=[
            health.live,
            health.ready,
            metrics.metrics,
            metadata.authorization_server_metadata,
            metadata.gateway_jwks,
            metadata.tenant_jwks,
            metadata.node_description,
            metadata.problem_type,
            witnessing.audit_log,
            witnessing.checkpoint,
            witnessing.add_checkpoint,
            oauth.token,
            _api(),
            # Staff pages: guarded like the API (sign-in pages are public); each opens its context where its work
            # starts (gateway/web/pages.py).
            Router("/", route_handlers=WEB_ROUTES, guards=GUARDS, dependencies=PRINCIPAL),
        ],
        middleware=[
            PrincipalMiddleware,
            rate_limit_config(settings.rate_limits.requests_per_minute).middleware,
            SessionBoundCsrf(csrf),
            AuditOutcomes(),
        ],
        lifespan=[lifespan],
        request_class=BoundedRequest,
        plugins=[StrictBodySchemas(), PROBLEM_DETAILS, BrowserErrorPages()],
        before_request=check_request,
        before_send=[add_request_id],
        state=_state(runtime, csrf),
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=settings.server.max_body_bytes,
        template_config=TemplateConfig(
            directory=TEMPLATE_DIR, engine=JinjaTemplateEngine, engine_callback=configure_templates
        ),
        openapi_config=OpenAPIConfig(
            title="casebridge",
            version=API_VERSION,
            path=OPENAPI_PATH,
            render_plugins=schema_viewers(),
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(type="http", scheme="bearer", bearer_format="JWT"),
                }
            ),
            security=[{"bearer": []}],
        ),
        debug=False,
        # The process's logging is gateway/logs.py's (set up by `serve` and `worker`); Litestar's own configuration
        # would replace its handlers, and unexpected errors are logged by gateway/problems.py with the request id.
        logging_config=None,
    )
    document_problems(app)
    # Outside routing, so that requests no route matches are counted and logged too (gateway/access_log.py).
    app.asgi_handler = RequestObserver(app.asgi_handler, runtime.http_metrics)
    return app


def app_from_environment() -> Litestar:
    """The app of one web process of `casebridge serve --workers N`, configured from the environment it inherited."""
    from gateway.processes import end_with_parent

    end_with_parent()
    return create_app(Settings.from_env())


def _api() -> Router:
    """The API (gateway/controllers; docs/api.md): every route guarded, and handed its request context as `ctx`."""
    return Router(
        "/api/v1",
        route_handlers=[
            DirectoryController,
            CaseController,
            ReferralController,
            ReportController,
            PlanController,
            ReminderController,
            AuditController,
            TrailController,
        ],
        guards=GUARDS,
        dependencies=CONTEXT,
        exception_handlers=CONTEXT_PROBLEMS,
    )


def _publisher(bus: Bus) -> Publish:
    """Signed checkpoints go to the CB_AUDIT stream, where outside witnesses can keep copies."""

    async def publish(subject: str, payload: bytes) -> None:
        # A new leader republishes the latest checkpoint; the message id lets JetStream drop the repeat.
        message_id = "checkpoint-" + hashlib.sha256(payload).hexdigest()
        await bus.js.publish(subject, payload, stream=AUDIT_STREAM, timeout=5, headers={"Nats-Msg-Id": message_id})

    return publish


def _state(runtime: Runtime, csrf: CsrfTokens) -> State:
    return State({"runtime": runtime, "session_cookie": session_cookie_name(runtime), "csrf": csrf})


def _derived_secret(runtime: Runtime, purpose: str) -> str:
    """A per-deployment secret for `purpose`, derived from the master key so no secret lives in code."""
    return hashlib.sha256(runtime.master_key.derive(f"casebridge/{purpose}/v1")).hexdigest()
