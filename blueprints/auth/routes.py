"""URL map: ``/login`` (identifier first), ``/login/password``, ``/logout``, ``/account``."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, request, url_for
from flask_login import current_user, login_required

from services import accounts, audit, passwords, policy, signin
from services.directory import DirectoryError, bind_as_user

from ..rendering import redirect_to, render
from . import bp
from ..approvals.routes import set_binding_cookie
from .cookies import client_ip, sign_in, sign_out
from .forms import EmptyForm, IdentifierForm, PasswordSignInForm


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a path on this site (never another host or scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


def _login_page(form, status=200, **context):
    return render("auth/login.html", form=form, ask_account_id=signin.needs_account_id(), status=status, **context)


@bp.route("/login", methods=["GET", "POST"])
@bp.route("/o/<slug>/login", methods=["GET", "POST"])
def login(slug: str | None = None):
    """Identifier-first sign-in page: the identifier, then a method."""
    form = IdentifierForm()
    if slug and not form.account_id.data:
        form.account_id.data = slug
    if not form.is_submitted():
        form.identifier.data = form.identifier.data or request.args.get("identifier", "")[:256]
        return _login_page(form)
    if not form.validate():
        return _login_page(form, 422)
    organisation = signin.organisation_for(form.account_id.data)
    if organisation is None:
        if not form.account_id.data and not signin.needs_account_id():
            return _login_page(form, 503, problem="Sign-in is not set up yet: this installation has no organisation. "
                                                  "An administrator creates one with `flask admin create`.")
        form.account_id.errors = ["Enter your organisation's Account ID." if not form.account_id.data else "There is no organisation with that Account ID."]
        return _login_page(form, 422)
    if request.form.get("method") == "password":
        return redirect_to(url_for("auth.login_password", identifier=form.identifier.data, account_id=organisation.slug,
                                   next=request.args.get("next")))
    return _start_email_sign_in(form, organisation)


def _start_email_sign_in(form, organisation, password_checked: bool = False, template: str = "auth/login.html"):
    try:
        started = signin.start(organisation, form.identifier.data, ip=client_ip(), user_agent=request.user_agent.string,
                               password_checked=password_checked)
    except signin.Throttled as exc:
        problem, status = str(exc), 429
    except signin.Unavailable as exc:
        problem, status = str(exc), 503
    except signin.NoApprover as exc:
        problem, status = str(exc), 200
    else:
        problem = None
    if problem:
        return render(template, form=form, ask_account_id=signin.needs_account_id(), problem=problem, status=status)
    if started.needs_password:
        return redirect_to(url_for("auth.login_password", identifier=form.identifier.data, account_id=organisation.slug))
    response = redirect_to(url_for("approvals.wait_page", public_id=started.request.public_id))
    if started.binding_secret:
        lifetime = int((started.request.expires_at - started.request.created_at).total_seconds())
        set_binding_cookie(response, started.binding_secret, lifetime + 600)
    return response


@bp.route("/login/password", methods=["GET", "POST"])
def login_password():
    """Sign in with a password: a local account's, or a directory account's (LDAP bind).
    When the user's approval profile asks for manager approval, the password is only
    the first factor and the manager is asked next."""
    form = PasswordSignInForm()
    if request.method == "GET":
        form.identifier.data = request.args.get("identifier", "")[:256]
        form.account_id.data = request.args.get("account_id", "")[:64]
        form.next.data = safe_next(request.args.get("next")) or ""
        return render("auth/password.html", form=form)
    if not form.validate():
        return render("auth/password.html", form=form, status=422)
    organisation = signin.organisation_for(form.account_id.data)
    try:
        account, resolution = _check_password(organisation, form.identifier.data, form.password.data)
    except DirectoryError:
        form.password.errors = ["Your organisation's directory cannot be reached right now. Try again in a few minutes."]
        return render("auth/password.html", form=form, status=503)
    if account is None:
        audit.record(
            "sign_in.password", actor=form.identifier.data[:320], target=form.identifier.data[:320],
            organisation=organisation.slug if organisation else None, ip=client_ip(),
            user_agent=request.user_agent.string, outcome="failure", details={"reason": "wrong username or password"},
        )
        signin.password_failed(resolution, ip=client_ip(), user_agent=request.user_agent.string)
        form.password.errors = ["Wrong username or password."]
        form.password.data = ""
        return render("auth/password.html", form=form, status=422)
    if resolution is not None and resolution.profile is not None and resolution.profile.kind == "manager":
        return _start_email_sign_in(form, organisation, password_checked=True, template="auth/password.html")
    sign_in(account, "password")
    audit.record(
        "sign_in.completed", actor=account.username, target=account.username, organisation=account.organisation.slug,
        ip=client_ip(), user_agent=request.user_agent.string, details={"method": "password"},
    )
    return redirect_to(safe_next(form.next.data) or url_for("auth.account"))


def _check_password(organisation, identifier: str, password: str):
    """(account, resolution) when the password is right, (None, resolution) otherwise.
    Unknown users cost one password hash too. DirectoryError when LDAP is down."""
    if organisation is None:
        passwords.check_password(None, password)
        return None, None
    resolution = policy.decide(organisation, identifier)
    user = resolution.user
    if user is None or user.source == "local":
        account = accounts.find_local(organisation, identifier) if user else None
        usable = account is not None and account.status == "active"
        if passwords.check_password(account if usable else None, password) and usable:
            return account, resolution
        return None, resolution
    if resolution.error and user is None:
        raise DirectoryError(resolution.error)
    if not bind_as_user(resolution.directory, user, password):
        return None, resolution
    account = signin.account_for(organisation, user, resolution.directory)
    return (account if account.status == "active" else None), resolution


@bp.post("/logout")
def logout():
    """Sign out: the server-side session ends, so the old cookie stops working."""
    if current_user.is_authenticated:
        audit.record(
            "sign_out", actor=current_user.account.username, target=current_user.account.username,
            organisation=current_user.account.organisation.slug, ip=client_ip(), user_agent=request.user_agent.string,
        )
    sign_out()
    flash("You have signed out.", "success")
    return redirect(url_for("auth.login"), code=303)


@bp.get("/account")
@login_required
def account():
    """Who is signed in, and how."""
    return render("auth/account.html", account=current_user.account, user_session=current_user.session, form=EmptyForm())
