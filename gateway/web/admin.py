"""The tenant administrator's pages: staff (invite, roles, second factor, deactivation), API clients, key rotation.

Every page calls one service of `tenants.admin` inside `open_context`, which records the route's audit event.
The invitee's page (`/account/invitation/...`) is public: the link is the only credential its holder has.
"""

from __future__ import annotations

import logging
import uuid
import zoneinfo
from email.message import EmailMessage
from typing import Annotated, Any, Final

from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from audit.events import Action, Actor, Outcome
from exchange.plans.mail import MailError
from gateway.controllers.context import open_context, request_context, runtime_of
from gateway.web.forms import (
    FORM,
    AcceptForm,
    ClientForm,
    ConfirmForm,
    InvitationForm,
    Refusal,
    RolesForm,
    TimeZoneForm,
    ticked,
)
from gateway.web.i18n import N_, agency_zone, language_of
from gateway.web.pages import PUBLIC_PAGE, ROLE_LABELS, error_text, layout_context, page, redirect, render, translator
from gateway.web.paging import BadPageLink, back_to_first_page, next_offset, offset_param
from tenants import admin
from tenants.calendar import UnknownTimeZone, format_moment, time_zone
from tenants.errors import CasebridgeError, Conflict, InvalidInput, NotFound
from tenants.models import CLIENT_ROLES, Role, Scope, User
from tenants.persistence import platform_session

log = logging.getLogger("casebridge.gateway")

# Staff sessions carry no scopes, so a page's scope only documents what an API client would need for the same
# thing; the organisation's own configuration is directory:write's area. The role is what admits a person.
_ADMIN: Final = (Scope.DIRECTORY_WRITE, [Role.TENANT_ADMIN])
PER_PAGE: Final = 25
USERS: Final = "/admin"
USER: Final = "/admin/users"
CLIENTS: Final = "/admin/clients"
KEYS: Final = "/admin/keys"
ORGANISATION: Final = "/admin/organisation"
# The IANA zones of Russia's regions, west to east, offered first; every other zone follows them.
RUSSIAN_ZONES: Final = (
    "Europe/Kaliningrad",
    "Europe/Moscow",
    "Europe/Samara",
    "Asia/Yekaterinburg",
    "Asia/Omsk",
    "Asia/Novosibirsk",
    "Asia/Krasnoyarsk",
    "Asia/Irkutsk",
    "Asia/Yakutsk",
    "Asia/Vladivostok",
    "Asia/Magadan",
    "Asia/Kamchatka",
)
INVITATION: Final = "/account/invitation"

# The services' refusals that the pages can meet, so the catalogue translates them word for word.
SERVICE_MESSAGES: Final = (
    N_("That is not a valid email address."),
    N_("A user with this email address already exists."),
    N_(
        "This email address cannot be used for a new account here. If the person already has a casebridge account, "
        "ask the platform operator."
    ),
    N_("A user needs at least one role."),
    N_("The name may be at most 255 characters long."),
    N_("This account is deactivated; reactivate it before inviting again."),
    N_("This person has already signed in; an invitation is only for a new account."),
    N_("This invitation link is not valid any more. Ask your administrator for a new one."),
    N_("The two passwords do not match."),
    N_("The password must be at least 12 characters long."),
    N_("The password repeats too few different characters."),
    N_("You cannot remove your own administrator role; ask another administrator to do it."),
    N_("You cannot reset your own second factor; ask another administrator to do it."),
    N_("You cannot deactivate your own account; ask another administrator to do it."),
    N_("The account is already active."),
    N_("The account is already deactivated."),
    N_("The client's name must not be empty."),
    N_("A client needs at least one scope."),
    N_("The JWK must be a JSON object."),
    N_("The JWK contains a private key; register only the public part."),
    N_("The JWK must be an Ed25519 (kty OKP) or P-256 (kty EC) public key."),
    N_("The JWK is malformed and cannot be read as a public key."),
    N_("This client has already been revoked."),
)
SCOPE_LABELS: Final = {
    "cases:read": N_("Read cases and documents"),
    "cases:write": N_("Open cases and upload documents"),
    "consents:write": N_("Record and withdraw consents"),
    "referrals:read": N_("Read referrals and their threads"),
    "referrals:write": N_("Send and answer referrals"),
    "audit:read": N_("Read the audit trail"),
    "directory:read": N_("Read the partner directory"),
    "directory:write": N_("Publish the organisation's directory profile"),
}
KEY_USE_LABELS: Final = {
    "enc": N_("Receiving messages (encryption)"),
    "sig": N_("Signing messages"),
    "kek": N_("Protecting stored data"),
}


def service_error(request: Request[Any, Any, Any], exc: CasebridgeError) -> str:
    """The service's refusal in the user's language: word for word when the catalogue knows it."""
    _ = translator(request)
    translated = _(str(exc))
    return translated if str(exc) in SERVICE_MESSAGES else error_text(request, exc)


def _pages(offset: int, total: int) -> dict[str, Any]:
    """The shared pager's cursors: here simply the offset of the next page and of this one."""
    return {
        "next_cursor": next_offset(offset, PER_PAGE, offset + PER_PAGE < total),
        "cursor": str(offset) if offset else None,
    }


# -- staff ------------------------------------------------------------------------------------------------------------


@get(USERS, **page(*_ADMIN, Action.TENANTS_USER_LIST))
async def users_page(request: Request[Any, Any, Any]) -> Response[Any]:
    runtime = runtime_of(request)
    try:
        offset = offset_param(request, "cursor")
    except BadPageLink as bad:
        return back_to_first_page(request, bad)
    async with open_context(request) as ctx:
        found = await admin.list_staff(
            ctx.session, runtime.clock, principal=ctx.principal, offset=offset, limit=PER_PAGE
        )
    return render(
        request,
        "admin_users.html",
        members=found.items,
        total=found.total,
        me=ctx.principal.actor_id,
        **_pages(offset, found.total),
    )


@get(f"{USERS}/invite", **page(*_ADMIN, None))
async def invite_page(request: Request[Any, Any, Any]) -> Response[Any]:
    return render(request, "admin_invite.html", roles=list(ROLE_LABELS), form={}, error=None)


@post(f"{USERS}/invite", **page(*_ADMIN, Action.TENANTS_USER_INVITE))
async def invite(request: Request[Any, Any, Any], data: Annotated[InvitationForm, FORM]) -> Response[Any]:
    runtime = runtime_of(request)
    try:
        async with open_context(request) as ctx:
            invited = await admin.invite_user(
                ctx.session,
                runtime.clock,
                principal=ctx.principal,
                email=data.email,
                roles=ticked(data.roles),
                display_name=data.display_name,
                valid_for=runtime.settings.sessions.invitation_lifetime,
            )
            ctx.audit.touched(resource_type="user", resource_id=invited.user.id, roles=invited.user.roles)
    except (InvalidInput, Conflict) as exc:
        error = service_error(request, exc)
        return render(request, "admin_invite.html", status=400, roles=list(ROLE_LABELS), form=data.shown(), error=error)
    return await _invited(request, invited)


@get(f"{USER}/{{user_id:uuid}}", **page(*_ADMIN, Action.TENANTS_USER_READ))
async def user_page(request: Request[Any, Any, Any], user_id: FromPath[uuid.UUID]) -> Response[Any]:
    runtime = runtime_of(request)
    async with open_context(request) as ctx:
        member = await admin.staff_member(ctx.session, runtime.clock, principal=ctx.principal, user_id=user_id)
        ctx.audit.touched(resource_type="user", resource_id=user_id)
    return render(request, "admin_user.html", member=member, roles=list(ROLE_LABELS), me=ctx.principal.actor_id)


@post(f"{USER}/{{user_id:uuid}}/roles", **page(*_ADMIN, Action.TENANTS_USER_ROLES))
async def change_roles(
    request: Request[Any, Any, Any], user_id: FromPath[uuid.UUID], data: Annotated[RolesForm, FORM]
) -> Response[Any]:
    _, back = translator(request), f"{USER}/{user_id}"
    try:
        async with open_context(request) as ctx:
            ctx.audit.touched(resource_type="user", resource_id=user_id)
            user = await admin.set_roles(
                ctx.session, principal=ctx.principal, user_id=user_id, roles=ticked(data.roles)
            )
            ctx.audit.touched(roles=user.roles)
    except (InvalidInput, Conflict) as exc:
        return redirect(request, back, error=service_error(request, exc))
    return redirect(request, back, success=_("The roles were saved."))


@post(f"{USER}/{{user_id:uuid}}/second-factor-reset", **page(*_ADMIN, Action.TENANTS_USER_SECOND_FACTOR_RESET))
async def reset_second_factor(request: Request[Any, Any, Any], user_id: FromPath[uuid.UUID]) -> Response[Any]:
    _ = translator(request)
    back = f"{USER}/{user_id}"
    try:
        async with open_context(request) as ctx:
            ctx.audit.touched(resource_type="user", resource_id=user_id)
            await admin.reset_second_factor(
                ctx.session, runtime_of(request).clock, principal=ctx.principal, user_id=user_id
            )
    except Conflict as exc:
        return redirect(request, back, error=service_error(request, exc))
    return redirect(
        request,
        back,
        success=_(
            "The second factor was reset. The person sets up a new one at the "
            "next sign-in; their open sessions have ended."
        ),
    )


def _set_active(active: bool) -> Any:
    action = Action.TENANTS_USER_REACTIVATE if active else Action.TENANTS_USER_DEACTIVATE
    path = f"{USER}/{{user_id:uuid}}/{'reactivate' if active else 'deactivate'}"

    @post(path, **page(*_ADMIN, action), name=f"user-{'reactivate' if active else 'deactivate'}")
    async def handler(request: Request[Any, Any, Any], user_id: FromPath[uuid.UUID]) -> Response[Any]:
        _ = translator(request)
        back = f"{USER}/{user_id}"
        try:
            async with open_context(request) as ctx:
                ctx.audit.touched(resource_type="user", resource_id=user_id)
                await admin.set_active(
                    ctx.session,
                    runtime_of(request).clock,
                    principal=ctx.principal,
                    user_id=user_id,
                    active=active,
                )
        except Conflict as exc:
            return redirect(request, back, error=service_error(request, exc))
        if active:
            return redirect(request, back, success=_("The account is active again. The person can sign in."))
        return redirect(
            request, back, success=_("The account was deactivated. Their sessions have ended and they cannot sign in.")
        )

    return handler


@post(f"{USER}/{{user_id:uuid}}/invitation", **page(*_ADMIN, Action.TENANTS_USER_INVITE))
async def reissue_invitation(request: Request[Any, Any, Any], user_id: FromPath[uuid.UUID]) -> Response[Any]:
    runtime = runtime_of(request)
    try:
        async with open_context(request) as ctx:
            ctx.audit.touched(resource_type="user", resource_id=user_id, reissue=True)
            invited = await admin.reissue_invitation(
                ctx.session,
                runtime.clock,
                principal=ctx.principal,
                user_id=user_id,
                valid_for=runtime.settings.sessions.invitation_lifetime,
            )
    except Conflict as exc:
        return redirect(request, f"{USER}/{user_id}", error=service_error(request, exc))
    return await _invited(request, invited)


async def _invited(request: Request[Any, Any, Any], invited: admin.Invited) -> Response[Any]:
    """The invitation link, emailed to the person when casebridge has a mail server, else shown to hand over.

    Either way it leaves once: on this page only (never in a redirect, a cookie or a log) or in that one email.
    Should the server not take the email, the page shows the link instead and says so."""
    runtime = runtime_of(request)
    link = f"{runtime.settings.server.base_url}{INVITATION}/{invited.token}"
    emailed = False
    if runtime.mailer is not None:
        try:
            await runtime.mailer.send(_invitation_email(request, invited, link))
            emailed = True
        except MailError:
            log.warning("the mail server did not take an invitation email; its link is shown to the administrator")
    return render(
        request,
        "admin_invited.html",
        member=invited.user,
        link=None if emailed else link,
        emailed=emailed,
        mail_failed=runtime.mailer is not None and not emailed,
        expires_at=invited.expires_at,
    )


def _invitation_email(request: Request[Any, Any, Any], invited: admin.Invited, link: str) -> EmailMessage:
    """The invitation in the inviting administrator's language, from the organisation they administer."""
    _, language = translator(request), language_of(request)
    staff = layout_context(request)["staff"]
    organisation = staff.tenant_name if staff is not None else "casebridge"
    message = EmailMessage()
    message["To"] = invited.user.email
    message["Subject"] = _("Your casebridge account at %(organisation)s", organisation=organisation)
    until = format_moment(invited.expires_at, agency_zone(request), language)
    message.set_content(
        _(
            "%(organisation)s has created a casebridge account for you. Open this link to choose your password "
            "and set up your second factor:\n\n%(link)s\n\nThe link works once, until %(time)s. If you did not "
            "expect this email, ignore it: the account stays unused.",
            organisation=organisation,
            link=link,
            time=until,
        )
    )
    return message


# -- API clients ------------------------------------------------------------------------------------------------------


@get(CLIENTS, **page(*_ADMIN, Action.TENANTS_CLIENT_LIST))
async def clients_page(request: Request[Any, Any, Any]) -> Response[Any]:
    try:
        offset = offset_param(request, "cursor")
    except BadPageLink as bad:
        return back_to_first_page(request, bad)
    async with open_context(request) as ctx:
        found = await admin.list_clients(ctx.session, principal=ctx.principal, offset=offset, limit=PER_PAGE)
    return render(request, "admin_clients.html", clients=found.items, total=found.total, **_pages(offset, found.total))


def _client_form(
    request: Request[Any, Any, Any], *, status: int = 200, form: dict[str, Any] | None = None, error: str | None = None
) -> Response[Any]:
    return render(
        request,
        "admin_client_new.html",
        status=status,
        scopes=SCOPE_LABELS,
        client_roles=sorted(CLIENT_ROLES),
        form=form or {"role": Role.SPECIALIST.value, "scopes": []},
        error=error,
    )


@get(f"{CLIENTS}/new", **page(*_ADMIN, None))
async def client_form(request: Request[Any, Any, Any]) -> Response[Any]:
    return _client_form(request)


@post(f"{CLIENTS}/new", **page(*_ADMIN, Action.TENANTS_CLIENT_REGISTER))
async def register_client(request: Request[Any, Any, Any], data: Annotated[ClientForm, FORM]) -> Response[Any]:
    _ = translator(request)
    jwk = data.public_jwk(request)
    if isinstance(jwk, Refusal):
        return _client_form(request, status=400, form=data.shown(), error=jwk.text)
    try:
        async with open_context(request) as ctx:
            client = await admin.register_client(
                ctx.session,
                principal=ctx.principal,
                name=data.name,
                public_jwk=jwk,
                scopes=ticked(data.scopes),
                role=data.role,
            )
            ctx.audit.touched(
                resource_type="api_client", resource_id=client.client_id, scopes=client.scopes, role=client.role
            )
    except InvalidInput as exc:
        return _client_form(request, status=400, form=data.shown(), error=service_error(request, exc))
    return redirect(
        request,
        CLIENTS,
        success=_("The client was registered. Its client_id is %(client_id)s.", client_id=client.client_id),
    )


@post(f"{CLIENTS}/{{client_id:uuid}}/revoke", **page(*_ADMIN, Action.TENANTS_CLIENT_REVOKE))
async def revoke_client(
    request: Request[Any, Any, Any], client_id: FromPath[uuid.UUID], data: Annotated[ConfirmForm, FORM]
) -> Response[Any]:
    _ = translator(request)
    if data.confirm != "yes":
        return redirect(request, CLIENTS, error=_("Tick the box to confirm that the client should be revoked."))
    try:
        async with open_context(request) as ctx:
            ctx.audit.touched(resource_type="api_client", resource_id=client_id)
            await admin.revoke_client(
                ctx.session, runtime_of(request).clock, principal=ctx.principal, client_id=client_id
            )
    except Conflict as exc:
        return redirect(request, CLIENTS, error=service_error(request, exc))
    return redirect(request, CLIENTS, success=_("The client was revoked. Its access tokens no longer work."))


# -- keys -------------------------------------------------------------------------------------------------------------


@get(KEYS, **page(*_ADMIN, Action.TENANTS_KEYS_READ))
async def keys_page(request: Request[Any, Any, Any]) -> Response[Any]:
    runtime = runtime_of(request)
    async with open_context(request) as ctx:
        keys = await admin.list_keys(ctx.session, runtime.clock, principal=ctx.principal)
    grace = runtime.settings.tokens.key_grace.days
    return render(request, "admin_keys.html", keys=keys, uses=KEY_USE_LABELS, grace_days=grace)


@post(f"{KEYS}/rotate", **page(*_ADMIN, Action.TENANTS_KEYS_ROTATE))
async def rotate_keys(request: Request[Any, Any, Any], data: Annotated[ConfirmForm, FORM]) -> Response[Any]:
    _ = translator(request)
    if data.confirm != "yes":
        return redirect(request, KEYS, error=_("Tick the box to confirm the rotation; nothing was changed."))
    async with open_context(request) as ctx:
        rotated = await admin.rotate_keys(ctx.session, runtime_of(request).keyring, principal=ctx.principal)
        ctx.audit.touched(
            resource_type="key_ring", resource_id=rotated.tenant_id, enc_kid=rotated.enc_kid, sig_kid=rotated.sig_kid
        )
    return redirect(
        request,
        KEYS,
        success=_(
            "New keys are in use. The previous ones stay valid for partners' "
            "messages in transit until their grace period ends."
        ),
    )


# -- the organisation -------------------------------------------------------------------------------------------------


@get(ORGANISATION, **page(*_ADMIN, Action.TENANTS_SETTINGS_READ))
async def organisation_page(request: Request[Any, Any, Any]) -> Response[Any]:
    """The organisation as the directory shows it, and its time zone: the clock its deadlines' days are kept on."""
    async with open_context(request) as ctx:
        tenant = await admin.organisation(ctx.session, principal=ctx.principal)
        ctx.audit.touched(resource_type="tenant", resource_id=tenant.id)
    others = sorted(zoneinfo.available_timezones() - set(RUSSIAN_ZONES))
    return render(request, "admin_organisation.html", tenant=tenant, russian=RUSSIAN_ZONES, others=others)


@post(f"{ORGANISATION}/time-zone", **page(*_ADMIN, Action.TENANTS_TIME_ZONE_SET))
async def set_time_zone(request: Request[Any, Any, Any], data: Annotated[TimeZoneForm, FORM]) -> Response[Any]:
    _ = translator(request)
    name = data.time_zone.strip()
    try:
        time_zone(name)
    except UnknownTimeZone:
        return redirect(request, ORGANISATION, error=_("Choose a time zone from the list; nothing was changed."))
    async with open_context(request) as ctx:
        tenant = await admin.set_time_zone(ctx.session, principal=ctx.principal, time_zone=name)
        ctx.audit.touched(resource_type="tenant", resource_id=tenant.id, time_zone=name)
    return redirect(
        request,
        ORGANISATION,
        success=_("The time zone is now %(zone)s. Deadlines already set keep their day.", zone=name),
    )


# -- the invitee's page -----------------------------------------------------------------------------------------------


@get(f"{INVITATION}/{{token:str}}", **PUBLIC_PAGE)
async def invitation_page(request: Request[Any, Any, Any], token: FromPath[str]) -> Response[Any]:
    return await _invitation_page(request, token)


@post(f"{INVITATION}/{{token:str}}", **PUBLIC_PAGE)
async def accept_invitation(
    request: Request[Any, Any, Any], token: FromPath[str], data: Annotated[AcceptForm, FORM]
) -> Response[Any]:
    runtime, _ = runtime_of(request), translator(request)
    try:
        async with platform_session(runtime.sessions) as session, session.begin():
            user = await admin.accept_invitation(
                session, runtime.clock, token=token, password=data.new_password, confirmation=data.confirmation
            )
            _audit_acceptance(request, session, user)
    except NotFound:
        return render(request, "admin_invitation.html", status=404, valid=False, email=None, error=None)
    except InvalidInput as exc:
        return await _invitation_page(request, token, error=service_error(request, exc))
    success = _("Your password is set. Sign in with %(email)s and set up the second factor.", email=user.email)
    return redirect(request, "/login", success=success)


async def _invitation_page(request: Request[Any, Any, Any], token: str, *, error: str | None = None) -> Response[Any]:
    """The invitee's form (404 for a link that is not valid any more), or the form again with why it was refused."""
    runtime = runtime_of(request)
    async with platform_session(runtime.sessions) as session, session.begin():
        found = await admin.open_invitation(session, runtime.clock, token=token)
    status = 400 if error is not None else 200 if found is not None else 404
    email = found[1].email if found is not None else None
    return render(request, "admin_invitation.html", status=status, valid=found is not None, email=email, error=error)


def _audit_acceptance(request: Request[Any, Any, Any], session: AsyncSession, user: User) -> None:
    """The acceptance, in the invitee's organisation's trail: no principal signed in yet to record it for them."""
    runtime_of(request).exchange.audit.append(
        session,
        action=Action.TENANTS_INVITATION_ACCEPT,
        outcome=Outcome.SUCCESS,
        actor=Actor(kind="user", id=user.id, tenant_id=user.tenant_id, role=sorted(user.roles)[0]),
        log_tenant_id=user.tenant_id,
        context=request_context(request),
        resource_type="user",
        resource_id=str(user.id),
    )


ADMIN_ROUTES: list[HTTPRouteHandler] = [
    users_page,
    invite_page,
    invite,
    user_page,
    change_roles,
    reset_second_factor,
    _set_active(False),
    _set_active(True),
    reissue_invitation,
    clients_page,
    client_form,
    register_client,
    revoke_client,
    keys_page,
    rotate_keys,
    organisation_page,
    set_time_zone,
    invitation_page,
    accept_invitation,
]
