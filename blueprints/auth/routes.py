"""URL map: ``/login`` (identifier first), ``/login/password``, ``/logout``, ``/account``."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, request, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

from models import Account, UserSession, utcnow
from services import audit, lockout, password_policy, password_reset, passwords, policy, signin
from services.directory import DirectoryError, bind_as_user

from ..deferred import after_response
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
    the first factor and the manager is asked next. Attempts are limited per client IP
    and counted per account (services.lockout); a locked account — and an unknown
    username that had as many failures — gets the same "locked until HH:MM UTC" answer."""
    form = PasswordSignInForm()
    if request.method == "GET":
        form.identifier.data = request.args.get("identifier", "")[:256]
        form.account_id.data = request.args.get("account_id", "")[:64]
        form.next.data = safe_next(request.args.get("next")) or ""
        return render("auth/password.html", form=form)
    if not form.validate():
        return render("auth/password.html", form=form, status=422)
    organisation = signin.organisation_for(form.account_id.data)
    rules = password_policy.policy_for(organisation) if organisation is not None else None
    try:
        lockout.check_ip(client_ip())
        account, resolution = _check_password(organisation, form.identifier.data, form.password.data,
                                              lockout.settings_from(rules))
    except DirectoryError as exc:
        _password_failed(form, organisation, f"directory unreachable: {exc}")
        form.password.errors = ["Your organisation's directory cannot be reached right now. Try again in a few minutes."]
        return render("auth/password.html", form=form, status=503)
    except (lockout.Locked, lockout.IpThrottled) as exc:
        _password_failed(form, organisation, "locked" if isinstance(exc, lockout.Locked) else "throttled per IP")
        form.password.errors = [str(exc)]
        form.password.data = ""
        return render("auth/password.html", form=form, status=429)
    if account is None:
        _password_failed(form, organisation, "wrong username or password")
        # After the answer: a known user's failure notice must not make it slower (SECURITY.md 8).
        after_response(signin.password_failed, resolution, ip=client_ip(), user_agent=request.user_agent.string)
        form.password.errors = ["Wrong username or password."]
        form.password.data = ""
        return render("auth/password.html", form=form, status=422)
    if resolution is not None and resolution.profile is not None and resolution.profile.kind == "manager":
        return _start_email_sign_in(form, organisation, password_checked=True, template="auth/password.html")
    must_change = password_policy.needs_change(account, rules)  # expired: marks must_change_password
    second_factor = sign_in(account, "password")
    if second_factor:  # the second-factor step finishes the sign-in
        return redirect_to(url_for("account.login_totp", next=safe_next(form.next.data)) if safe_next(form.next.data) else second_factor)
    audit.record(
        "sign_in.completed", actor=account.username, target=account.username, organisation=account.organisation.slug,
        ip=client_ip(), user_agent=request.user_agent.string, details={"method": "password"},
    )
    if must_change:
        flash("Your password has expired. Choose a new one to go on.", "warning")
        return redirect_to(url_for("auth.change_password", next=safe_next(form.next.data)))
    return redirect_to(safe_next(form.next.data) or url_for("auth.account"))


def _password_failed(form, organisation, reason: str) -> None:
    """Audit a password sign-in that did not pass, and why."""
    audit.record(
        "sign_in.password", actor=form.identifier.data[:320], target=form.identifier.data[:320],
        organisation=organisation.slug if organisation else None, ip=client_ip(),
        user_agent=request.user_agent.string, outcome="failure", details={"reason": reason},
    )


def _reserve_attempt(organisation, identifier: str, account, password: str, settings) -> None:
    """Count this attempt before the password is checked (services.lockout); a locked
    account or identifier raises Locked after a dummy hash, so timing does not tell."""
    try:
        if account is not None and account.status == "active":
            lockout.reserve(account, settings, ip=client_ip(), user_agent=request.user_agent.string)
        else:
            lockout.reserve_unknown(organisation, identifier, settings)
    except lockout.Locked:
        passwords.check_password(None, password)
        raise


def _check_password(organisation, identifier: str, password: str, settings: lockout.Settings):
    """(account, resolution) when the password is right, (None, resolution) otherwise.
    Unknown users cost one password hash too. DirectoryError when LDAP is down;
    lockout.Locked when the account (or the unknown identifier) is locked."""
    if organisation is None:
        _reserve_attempt(None, identifier, None, password, settings)
        passwords.check_password(None, password)
        return None, None
    resolution = policy.decide(organisation, identifier)
    user = resolution.user
    if user is None and resolution.directory_down:
        # Not "wrong password", and nothing is counted; one hash, as any answer costs.
        passwords.check_password(None, password)
        raise DirectoryError(resolution.error)
    if user is None or user.source == "local":
        account = user.account if user else None
        usable = account is not None and account.status == "active"
        _reserve_attempt(organisation, identifier, account if usable else None, password, settings)
        if passwords.check_password(account if usable else None, password) and usable:
            _password_passed(account)
            return account, resolution
        return None, resolution
    known = Account.get_or_none((Account.organisation == organisation) & (Account.directory == resolution.directory)
                                & (Account.external_id == (user.unique_id or user.dn)))
    _reserve_attempt(organisation, identifier, known, password, settings)
    try:
        if not bind_as_user(resolution.directory, user, password):
            return None, resolution
    except DirectoryError:
        if known is not None and known.status == "active":
            lockout.release(known)  # the directory failed, not the person: the attempt does not count
        raise
    account = signin.account_for(organisation, user, resolution.directory)
    if account.status != "active":
        return None, resolution
    _password_passed(account)
    return account, resolution


def _password_passed(account) -> None:
    """A right password clears the failure count only when it completes the sign-in: with
    two-factor on, the code step clears it, so alternating a right password with wrong
    codes cannot escape the lockout."""
    if account.totp_enabled_at is None:
        lockout.succeeded(account)


PASSWORD_CHANGE_ENDPOINTS = {"auth.change_password", "auth.password_check", "auth.logout", "static"}


@bp.before_app_request
def _expired_password_first():
    """A session whose password has expired reaches nothing but the change form."""
    endpoint = request.endpoint
    if endpoint is None or endpoint in PASSWORD_CHANGE_ENDPOINTS:
        return None
    if current_user.is_authenticated and current_user.account.must_change_password:
        flash("Your password has expired: choose a new one before you continue.", "warning")
        return redirect_to(url_for("auth.change_password"))
    return None


@bp.post("/logout")
def logout():
    """Sign out: the server-side session ends, so the old cookie stops working."""
    if current_user.is_authenticated:
        audit.record(
            "sign_out", actor=current_user.account.username, target=current_user.account.username,
            organisation=current_user.account.organisation.slug, ip=client_ip(), user_agent=request.user_agent.string,
            details={"elevated_to": current_user.session.acting_role} if current_user.session.acting_role else None,
        )
    sign_out()
    flash("You have signed out.", "success")
    return redirect(url_for("auth.login"), code=303)


@bp.get("/account")
@login_required
def account():
    """Who is signed in, and how."""
    return render("auth/account.html", account=current_user.account, user_session=current_user.session, form=EmptyForm())


# --------------------------------------------------------------------------- password change and reset


class ChangePasswordForm(FlaskForm):
    """The current password and a new one (twice)."""

    current = PasswordField("Current password", validators=[DataRequired("Enter your current password."), Length(max=1024)],
                            render_kw={"autocomplete": "current-password"})
    new = PasswordField("New password", validators=[DataRequired("Choose a new password."), Length(max=1024, message="That is too long.")],
                        render_kw={"autocomplete": "new-password"})
    confirm = PasswordField("New password again", validators=[DataRequired("Type the new password again."), Length(max=1024)],
                            render_kw={"autocomplete": "new-password"})
    end_other_sessions = BooleanField("Sign out everywhere else", default=True)
    next = HiddenField(validators=[Optional(), Length(max=512)])


class ResetRequestForm(FlaskForm):
    """Username or email for a reset link."""

    account_id = StringField("Account ID", validators=[Optional(), Length(max=64, message="That is too long for an Account ID.")],
                             render_kw={"autocapitalize": "none", "spellcheck": "false", "autocomplete": "organization"})
    identifier = StringField("Username or email", validators=[DataRequired("Enter your username or email address."),
                                                              Length(max=256, message="That is too long for a username or email address.")],
                             render_kw={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false", "autofocus": True})


class ResetPasswordForm(FlaskForm):
    """The new password (twice), through a reset link."""

    new = PasswordField("New password", validators=[DataRequired("Choose a new password."), Length(max=1024, message="That is too long.")],
                        render_kw={"autocomplete": "new-password"})
    confirm = PasswordField("New password again", validators=[DataRequired("Type the new password again."), Length(max=1024)],
                            render_kw={"autocomplete": "new-password"})


def _text(name: str) -> str:
    """A form field as a string (a list or a file is garbage: empty)."""
    value = request.form.get(name, "")
    return value if isinstance(value, str) else ""


@bp.post("/account/password/check")
def password_check():
    """The live checklist of the new-password field (HTMX, while typing). Says which
    rules of the organisation's policy the typed password meets; stores nothing."""
    if current_user.is_authenticated:
        account = current_user.account
    else:
        row = password_reset.find(_text("token")[:128])
        if row is None:
            return render("auth/reset_rules.html", rules=[], typed=False)
        account = row.account
    password = _text("new")[:2048]
    rules = password_policy.check(password, account, password_policy.policy_for(account.organisation))
    return render("auth/reset_rules.html", rules=rules, typed=bool(password))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    """Change the signed-in user's password: needs the current one; emails the owner;
    optionally signs out every other session."""
    account = current_user.account
    form = ChangePasswordForm()
    policy_ = password_policy.policy_for(account.organisation)
    template = "auth/reset_change.html"
    context = {"account": account, "rules": password_policy.check("", account, policy_)}
    if account.source != "local":
        return render(template, form=form, directory_account=True, **context)
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next")) or ""
        return render(template, form=form, **context)
    if not form.validate():
        return render(template, form=form, status=422, **context)
    if not passwords.check_password(account, form.current.data):
        form.current.errors = ["That is not your current password."]
        audit.record("password.change", actor=account.username, target=account.username, organisation=account.organisation.slug,
                     ip=client_ip(), user_agent=request.user_agent.string, outcome="failure", details={"reason": "wrong current password"})
        return render(template, form=form, status=422, **context)
    if form.new.data != form.confirm.data:
        form.confirm.errors = ["The two new passwords are not the same."]
        return render(template, form=form, status=422, **context)
    unmet = password_policy.problems(form.new.data, account, policy_)
    if unmet:
        form.new.errors = ["Choose a password that meets every rule: " + "; ".join(unmet) + "."]
        return render(template, form=form, status=422, rules=password_policy.check(form.new.data, account, policy_),
                      account=account)
    password_policy.change(account, form.new.data, policy_)
    ended = 0
    if form.end_other_sessions.data:
        # Every other session ends; this browser's stays (it just proved the password).
        ended = UserSession.update(ended_at=utcnow()).where(
            (UserSession.account == account) & UserSession.ended_at.is_null() & (UserSession.id != current_user.session.id)
        ).execute()
    password_reset.notify_changed(account, ip=client_ip(), how="by you")
    audit.record("password.change", actor=account.username, target=account.username, organisation=account.organisation.slug,
                 ip=client_ip(), user_agent=request.user_agent.string, details={"other_sessions_ended": max(ended, 0)})
    flash("Your password has been changed." + (" You were signed out everywhere else." if form.end_other_sessions.data else ""), "success")
    return redirect_to(safe_next(form.next.data) or url_for("auth.account"))


@bp.route("/login/reset", methods=["GET", "POST"])
def reset_request():
    """Ask for a reset link. The answer is the same whoever is named."""
    form = ResetRequestForm()
    if not form.is_submitted():
        form.identifier.data = request.args.get("identifier", "")[:256]
        return render("auth/reset_request.html", form=form, ask_account_id=signin.needs_account_id())
    if not form.validate():
        return render("auth/reset_request.html", form=form, ask_account_id=signin.needs_account_id(), status=422)
    organisation = signin.organisation_for(form.account_id.data)
    try:
        password_reset.request_reset(organisation, form.identifier.data, ip=client_ip(), user_agent=request.user_agent.string)
    except password_reset.Throttled as exc:
        return render("auth/reset_request.html", form=form, ask_account_id=signin.needs_account_id(), problem=str(exc), status=429)
    return render("auth/reset_sent.html")


def linked_password_form(template: str, form, context: dict):
    """The set-a-password page behind an emailed link (reset, invitation): the page for
    GET/HEAD (no Referer leaks the token), the form again (422) when a field is wrong or
    the two passwords differ; None when the POST may go on."""
    if request.method != "POST":
        response = render(template, form=form, **context)
        response.headers["Referrer-Policy"] = "no-referrer"
        return response
    if not form.validate():
        return render(template, form=form, status=422, **context)
    if form.new.data != form.confirm.data:
        form.confirm.errors = ["The two passwords are not the same."]
        return render(template, form=form, status=422, **context)
    return None


@bp.route("/login/reset/<token>", methods=["GET", "HEAD", "POST"])
def reset_password(token: str):
    """GET shows the form (never consumes the link); POST sets the new password."""
    row = password_reset.find(token)
    if row is None:
        return render("auth/reset_gone.html", status=410)
    account = row.account
    policy_ = password_policy.policy_for(account.organisation)
    form = ResetPasswordForm()
    context = {"token": token, "account": account, "rules": password_policy.check("", account, policy_)}
    answer = linked_password_form("auth/reset_form.html", form, context)
    if answer is not None:
        return answer
    try:
        done = password_reset.complete(token, form.new.data, ip=client_ip(), user_agent=request.user_agent.string)
    except password_reset.ResetError as exc:
        if not exc.problems:
            return render("auth/reset_gone.html", status=410)
        form.new.errors = [str(exc) + " " + "; ".join(exc.problems) + "."]
        context["rules"] = password_policy.check(form.new.data, account, policy_)
        return render("auth/reset_form.html", form=form, status=422, **context)
    flash("Your password has been changed. Sign in with it now.", "success")
    return redirect_to(url_for("auth.login_password", identifier=done.account.username, account_id=done.account.organisation.slug))
