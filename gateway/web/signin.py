"""Staff sign-in pages: password, second factor (TOTP or recovery code) and its enrolment, password change, sign-out."""

from __future__ import annotations

import contextlib
import io
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any, Final

import segno
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from audit.events import Action, Actor, Outcome
from gateway.auth.csrf import CsrfTokens
from gateway.controllers.context import request_context
from gateway.runtime import Runtime
from gateway.web.forms import FORM, CodeForm, LanguageForm, LoginForm, PasswordForm
from gateway.web.i18n import LANGUAGES, use_language
from gateway.web.pages import PUBLIC_PAGE, language_cookie, local_path, redirect, render, start_page, translator
from tenants.credentials import MIN_PASSWORD_LENGTH
from tenants.errors import InvalidInput
from tenants.models import User
from tenants.persistence import platform_session
from tenants.services import (
    WRONG_CURRENT_PASSWORD,
    SignInRefused,
    TotpEnrolment,
    begin_totp_enrolment,
    change_own_password,
    confirm_totp_enrolment,
    pass_second_factor,
    pending_totp_enrolment,
    set_language,
    sign_in,
)
from tenants.staff_sessions import (
    ActiveSession,
    end_all_sessions,
    end_session,
    find_session,
    start_session,
)

HOME: Final = "/"
LOGIN: Final = "/login"
SECOND_FACTOR: Final = "/login/second-factor"
ENROL: Final = "/account/second-factor/enrol"
PASSWORD: Final = "/account/password"  # noqa: S105 - the path of a page, not a password
LOGOUT: Final = "/logout"
ACCOUNT: Final = "/account/profile"
LANGUAGE: Final = "/account/language"

# The issuer label authenticator apps show next to the account (RFC 6238 key URI `issuer`).
TOTP_ISSUER: Final = "casebridge"

# Every page: open to the API guards (each handler checks the session itself), kept out of caches and the OpenAPI
# document, and never framed.
PAGE: Final = PUBLIC_PAGE


# -- pages -------------------------------------------------------------------------------------------------------


@get(LOGIN, **PAGE)
async def login_page(request: Request[Any, Any, Any]) -> Response[Any]:
    async with _transaction(request) as db:
        active = await _active_session(request, db)
    if active is not None and active.fully_signed_in:
        return _redirect(HOME)
    return _page(request, "login.html", expired=request.query_params.get("expired") == "1")


@post(LOGIN, **PAGE)
async def login(request: Request[Any, Any, Any], data: Annotated[LoginForm, FORM]) -> Response[Any]:
    runtime = _runtime(request)
    async with _transaction(request) as db:
        result = await sign_in(db, runtime.clock, runtime.lockout, email=data.email, password=data.password)
        if isinstance(result, SignInRefused):
            _audit_refusal(request, db, result, step="password")
            return _refusal(request, result, email=data.email)
        if (previous := await _active_session(request, db)) is not None:
            end_session(runtime.clock, previous.record)
        cookies = await _begin_session(request, db, result.user, second_factor_passed=False)
    return _redirect(ENROL if result.needs_enrolment else SECOND_FACTOR, cookies)


@get(SECOND_FACTOR, **PAGE)
async def second_factor_page(request: Request[Any, Any, Any]) -> Response[Any]:
    async with _transaction(request) as db:
        active = await _active_session(request, db)
    if active is None or _next_step(active) != SECOND_FACTOR:
        return _redirect(_next_step(active))
    return _page(request, "second_factor.html")


@post(SECOND_FACTOR, **PAGE)
async def second_factor(request: Request[Any, Any, Any], data: Annotated[CodeForm, FORM]) -> Response[Any]:
    runtime = _runtime(request)
    async with _transaction(request) as db:
        active = await _active_session(request, db)
        if active is None or _next_step(active) != SECOND_FACTOR:
            return _redirect(_next_step(active))
        result = await pass_second_factor(
            db, runtime.master_key, runtime.clock, runtime.lockout, user=active.user, code=data.code
        )
        if isinstance(result, SignInRefused):
            _audit_refusal(request, db, result, step="second-factor")
            if result.reason != "locked":
                return _page(request, "second_factor.html", status=400, error="invalid")
            # Locked: the half-finished sign-in is abandoned, so the password is needed again after the lock.
            end_session(runtime.clock, active.record)
            return _refusal(request, result, email=active.user.email, cookies=_ended_session_cookies(request))
        end_session(runtime.clock, active.record)
        cookies = await _begin_session(request, db, active.user, second_factor_passed=True)
        _audit_sign_in(request, db, active.user, Action.TENANTS_SESSION_SIGN_IN, Outcome.SUCCESS)
    return _redirect(PASSWORD if result.needs_password_change else HOME, cookies)


@get(ENROL, **PAGE)
async def enrolment_page(request: Request[Any, Any, Any]) -> Response[Any]:
    runtime = _runtime(request)
    async with _transaction(request) as db:
        active = await _active_session(request, db)
        if active is None or _next_step(active) != ENROL:
            return _redirect(_next_step(active))
        enrolment = _enrolment(runtime, active.user)
    return _enrolment_page(request, enrolment)


@post(ENROL, **PAGE)
async def enrol(request: Request[Any, Any, Any], data: Annotated[CodeForm, FORM]) -> Response[Any]:
    runtime = _runtime(request)
    async with _transaction(request) as db:
        active = await _active_session(request, db)
        if active is None or _next_step(active) != ENROL:
            return _redirect(_next_step(active))
        codes = await confirm_totp_enrolment(db, runtime.master_key, runtime.clock, user=active.user, code=data.code)
        if codes is None:
            return _enrolment_page(request, _enrolment(runtime, active.user), status=400, error="invalid")
        # A new second factor: any session begun under the old one (before an administrator's reset) ends too.
        await end_all_sessions(db, runtime.clock, user=active.user)
        cookies = await _begin_session(request, db, active.user, second_factor_passed=True)
        _audit_sign_in(request, db, active.user, Action.TENANTS_SESSION_SIGN_IN, Outcome.SUCCESS, reason="enrolled")
        next_page = PASSWORD if active.user.must_change_password else HOME
    return _page(request, "recovery_codes.html", cookies, codes=codes, next_page=next_page)


@get(PASSWORD, **PAGE)
async def password_page(request: Request[Any, Any, Any]) -> Response[Any]:
    async with _transaction(request) as db:
        active = await _active_session(request, db)
    if active is None or not active.record.second_factor_passed:
        return _redirect(_next_step(active))
    return _password_page(request, active)


@post(PASSWORD, **PAGE)
async def password(request: Request[Any, Any, Any], data: Annotated[PasswordForm, FORM]) -> Response[Any]:
    runtime = _runtime(request)
    async with _transaction(request) as db:
        active = await _active_session(request, db)
        if active is None or not active.record.second_factor_passed:
            return _redirect(_next_step(active))
        if (refused := await _change_password(request, db, active, data)) is not None:
            return _password_page(request, active, status=400, **refused)
        # Changing the password is how someone shuts out whoever learnt the old one: every other session ends.
        await end_all_sessions(db, runtime.clock, user=active.user)
        cookies = await _begin_session(request, db, active.user, second_factor_passed=True)
    _ = translator(request)
    return redirect(request, HOME, success=_("Your new password is saved."), cookies=cookies)


@post(LOGOUT, **PAGE)
async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
    runtime = _runtime(request)
    async with _transaction(request) as db:
        if (active := await _active_session(request, db)) is not None:
            end_session(runtime.clock, active.record)
    _ = translator(request)
    return redirect(request, LOGIN, success=_("You have signed out."), cookies=_ended_session_cookies(request))


@get(HOME, **PAGE)
async def home(request: Request[Any, Any, Any]) -> Response[Any]:
    async with _transaction(request) as db:
        active = await _active_session(request, db)
    if active is None or not active.fully_signed_in:
        return _redirect(_next_step(active))
    if (start := start_page(active.user.roles)) is not None:
        return _redirect(start)
    return _account_page(request, active)


@get(ACCOUNT, **PAGE)
async def account(request: Request[Any, Any, Any]) -> Response[Any]:
    async with _transaction(request) as db:
        active = await _active_session(request, db)
    if active is None or not active.fully_signed_in:
        return _redirect(_next_step(active))
    return _account_page(request, active)


def _account_page(request: Request[Any, Any, Any], active: ActiveSession) -> Response[Any]:
    return _page(
        request,
        "home.html",
        email=active.user.email,
        display_name=active.user.display_name,
        organisation=active.tenant.name,
        roles=sorted(active.user.roles),
    )


@post(LANGUAGE, **PAGE)
async def choose_language(request: Request[Any, Any, Any], data: Annotated[LanguageForm, FORM]) -> Response[Any]:
    """The switcher on every page: saved on the account when signed in, and in a cookie for the sign-in pages."""
    next_page = local_path(data.next)
    if data.language not in LANGUAGES:
        return _redirect(next_page)
    async with _transaction(request) as db:
        active = await _active_session(request, db)
        if active is not None:
            set_language(active.user, data.language)
    use_language(request, data.language)
    _ = translator(request)
    return redirect(
        request, next_page, success=_("The language is changed."), cookies=[language_cookie(request, data.language)]
    )


SIGNIN_ROUTES: list[HTTPRouteHandler] = [
    login_page,
    login,
    second_factor_page,
    second_factor,
    enrolment_page,
    enrol,
    password_page,
    password,
    logout,
    home,
    account,
    choose_language,
]


# -- the pieces the pages share ----------------------------------------------------------------------------------


def _runtime(request: Request[Any, Any, Any]) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@contextlib.asynccontextmanager
async def _transaction(request: Request[Any, Any, Any]) -> AsyncIterator[AsyncSession]:
    # Platform scope: the session cookie is what tells us the tenant, so it cannot be narrowed before the lookup.
    async with platform_session(_runtime(request).sessions) as db, db.begin():
        yield db


async def _active_session(request: Request[Any, Any, Any], db: AsyncSession) -> ActiveSession | None:
    token = request.cookies.get(request.app.state.session_cookie)
    if not token:
        return None
    runtime = _runtime(request)
    return await find_session(db, runtime.clock, runtime.session_policy, token=token)


def _next_step(active: ActiveSession | None) -> str:
    """The page that brings this browser one step closer to being signed in (HOME when it already is)."""
    if active is None:
        return LOGIN
    if not active.record.second_factor_passed:
        return SECOND_FACTOR if active.user.totp_enabled else ENROL
    if active.user.must_change_password:
        return PASSWORD
    return HOME


async def _begin_session(
    request: Request[Any, Any, Any], db: AsyncSession, user: User, *, second_factor_passed: bool
) -> list[Cookie]:
    """Start a session under a new token (never reuse one across a privilege change): its cookie, and a CSRF token
    bound to it."""
    runtime = _runtime(request)
    token, record = await start_session(
        db, runtime.clock, runtime.session_policy, user=user, second_factor_passed=second_factor_passed
    )
    max_age = record.expires_at - runtime.clock.now()
    return [
        _session_cookie(request, token, max_age=round(max_age.total_seconds())),
        _csrf(request).renew(request, token),
    ]


def _session_cookie(request: Request[Any, Any, Any], value: str, *, max_age: int) -> Cookie:
    return Cookie(
        key=request.app.state.session_cookie,
        value=value,
        path="/",
        max_age=max_age,
        httponly=True,
        samesite="lax",
        # Browsers drop a __Host- cookie, even one that deletes, unless it is Secure.
        secure=_runtime(request).settings.server.secure_cookies,
    )


def _ended_session_cookies(request: Request[Any, Any, Any]) -> list[Cookie]:
    """The session cookie cleared, and a CSRF token for a browser with no session (the sign-in form it is shown)."""
    cookie = _session_cookie(request, "", max_age=0)
    cookie.expires = 0
    return [cookie, _csrf(request).renew(request, None)]


def _csrf(request: Request[Any, Any, Any]) -> CsrfTokens:
    tokens: CsrfTokens = request.app.state.csrf
    return tokens


def _enrolment(runtime: Runtime, user: User) -> TotpEnrolment:
    pending = pending_totp_enrolment(runtime.master_key, user=user, issuer=TOTP_ISSUER)
    return pending or begin_totp_enrolment(runtime.master_key, user=user, issuer=TOTP_ISSUER)


def _enrolment_page(request: Request[Any, Any, Any], enrolment: TotpEnrolment, **context: Any) -> Response[Any]:
    return _page(
        request,
        "enrol.html",
        secret=enrolment.secret_text,
        uri=enrolment.uri,
        qr_code=Markup(setup_qr_svg(enrolment.uri)),  # noqa: S704  # segno's SVG of the URI: no user text in markup
        **context,
    )


def setup_qr_svg(uri: str) -> str:
    """The otpauth:// URI as a QR code in SVG, drawn on the server so the page needs no script to show it."""
    # Error correction M (15 %) survives a glare on a screen; 4 px modules with the standard 4-module quiet zone
    # (ISO/IEC 18004 §6.3.8) scan from a laptop screen at arm's length. A light background keeps it scannable on a
    # dark theme too.
    code = segno.make_qr(uri, error="m", boost_error=False)
    out = io.BytesIO()
    code.save(out, kind="svg", scale=4, border=4, dark="#000", light="#fff", xmldecl=False, svgclass="qr")
    return out.getvalue().decode().strip()


def _audit_sign_in(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    user: User | None,
    action: Action,
    outcome: Outcome,
    *,
    reason: str | None = None,
) -> None:
    """Record a sign-in step in the user's organisation's trail, in the transaction that changes the account.

    An attempt naming no known account goes to the platform's own trail; the address typed is never recorded,
    as it may be a mistyped personal address of someone else.
    """
    actor = Actor(
        kind="user",
        id=user.id if user else None,
        tenant_id=user.tenant_id if user else None,
        role=sorted(user.roles)[0] if user and user.roles else None,
    )
    _runtime(request).exchange.audit.append(
        db,
        action=action,
        outcome=outcome,
        actor=actor,
        log_tenant_id=user.tenant_id if user else None,
        context=request_context(request),
        resource_type="user",
        resource_id=str(user.id) if user else None,
        reason=reason,
    )


def _audit_refusal(request: Request[Any, Any, Any], db: AsyncSession, refused: SignInRefused, *, step: str) -> None:
    reason = f"{step}: {refused.reason}" if refused.user else f"{step}: unknown account"
    _audit_sign_in(request, db, refused.user, Action.TENANTS_SESSION_SIGN_IN_FAILED, Outcome.DENIED, reason=reason)
    if refused.locked_now:
        _audit_sign_in(request, db, refused.user, Action.TENANTS_SESSION_LOCKED, Outcome.DENIED, reason=step)


def _refusal(
    request: Request[Any, Any, Any], refused: SignInRefused, *, email: str, cookies: Sequence[Cookie] = ()
) -> Response[Any]:
    return _page(
        request, "login.html", cookies, status=400, error=refused.reason, email=email, locked_until=refused.locked_until
    )


async def _change_password(
    request: Request[Any, Any, Any], db: AsyncSession, active: ActiveSession, data: PasswordForm
) -> dict[str, Any] | None:
    """Change the password; None when it is changed, else the context of the password page shown again."""
    if data.new_password != data.confirmation:
        return {"error": "mismatch"}
    runtime = _runtime(request)
    try:
        refused = await change_own_password(
            db, runtime.clock, runtime.lockout, user=active.user, current=data.current_password, new=data.new_password
        )
    except InvalidInput as exc:
        return {"error": "rejected", "detail": str(exc)}
    if refused is None:
        return None
    _audit_refusal(request, db, refused, step="password-change")
    if refused.reason == "locked":
        return {"error": "locked", "locked_until": refused.locked_until}
    return {"error": "rejected", "detail": WRONG_CURRENT_PASSWORD}


def _password_page(
    request: Request[Any, Any, Any], active: ActiveSession, *, status: int = 200, **context: Any
) -> Response[Any]:
    return _page(
        request,
        "password.html",
        status=status,
        forced=active.user.must_change_password,
        min_length=MIN_PASSWORD_LENGTH,
        **context,
    )


def _page(
    request: Request[Any, Any, Any],
    template: str,
    cookies: Sequence[Cookie] = (),
    *,
    status: int = 200,
    **context: Any,
) -> Response[Any]:
    return render(request, template, status=status, cookies=cookies, **context)


def _redirect(path: str, cookies: Sequence[Cookie] = ()) -> Response[Any]:
    # 303: the browser follows with GET, so a reload of the next page never re-submits a form.
    return Redirect(path, status_code=303, cookies=list(cookies) or None)
