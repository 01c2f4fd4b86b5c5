"""URL map:

    GET, POST /login/totp                      login_totp          the second factor of every sign-in
    GET, POST /login/totp/recovery             login_totp_recovery "Use a recovery code instead" (2FA stays on)
    GET, POST /login/totp/reset                login_totp_reset    "Reset your two-factor authentication?" (recovery code)
    GET       /account/2fa                     two_factor          status and actions
    POST      /account/2fa/enrol               enrol               new secret: QR + secret as text (no-store)
    POST      /account/2fa/confirm             confirm             a code enables it; recovery codes shown once
    POST      /account/2fa/recovery-codes      regenerate          new recovery codes (shown once, or as .txt)
    POST      /account/2fa/recovery-codes.txt  download            the codes just shown, as a text file
    POST      /account/2fa/disable             disable             needs a current code

A session whose account must enrol (after a reset by recovery code, or an admin reset)
reaches nothing but these pages and sign-out until it has enrolled.
"""

from __future__ import annotations

import datetime as dt
import time

from flask import abort, flash, make_response, request, session, url_for
from flask_login import current_user, login_required

from models import Account
from services import audit, lockout, ratelimit, recovery_codes, totp

from ..auth.cookies import PENDING_SECOND_FACTOR, client_ip, start_session
from ..auth.forms import EmptyForm
from ..auth.routes import safe_next
from ..rendering import redirect_to, render
from . import bp
from .forms import CodeForm, DownloadForm, RecoveryForm

CODE_ATTEMPTS = ratelimit.Limit("second-factor-attempts-per-account", 5, dt.timedelta(minutes=15))
# Reachable while an account must enrol first.
ENROLMENT_ENDPOINTS = {"static", "core.healthz", "auth.logout"}


def _no_store(response):
    response.headers["Cache-Control"] = "no-store"
    return response


def _audit(action: str, account: Account, outcome: str = "success", **details):
    audit.record(action, actor=account.username, target=account.username, organisation=account.organisation.slug,
                 ip=client_ip(), user_agent=request.user_agent.string, outcome=outcome, details=details or None)


@bp.before_app_request
def _enrolment_first():
    """Send a session that must set up two-factor authentication to /account/2fa."""
    endpoint = request.endpoint
    if endpoint is None or endpoint in ENROLMENT_ENDPOINTS or endpoint.startswith("account."):
        return None
    if current_user.is_authenticated and current_user.account.must_enrol_totp:
        flash("Set up two-factor authentication before you continue.", "warning")
        return redirect_to(url_for("account.two_factor"))
    return None


# ----------------------------------------------------------------- sign-in step

def _pending() -> tuple[Account, str] | None:
    """The account and method of the sign-in waiting for its second factor, if still valid."""
    data = session.get(PENDING_SECOND_FACTOR)
    if not isinstance(data, dict) or not isinstance(data.get("expires"), int) or data["expires"] < time.time():
        return None
    account = Account.get_or_none(Account.id == data.get("account"))
    if account is None or account.status != "active" or not totp.is_enabled(account):
        return None
    return account, str(data.get("method", ""))


def _remember_next() -> None:
    """Keep a safe ``next`` (from the password step's redirect) with the pending sign-in."""
    target = safe_next(request.args.get("next"))
    data = session.get(PENDING_SECOND_FACTOR)
    if target and isinstance(data, dict) and data.get("next") != target:
        session[PENDING_SECOND_FACTOR] = {**data, "next": target}


def _pending_next() -> str | None:
    """The pending sign-in's ``next``, checked again (the session is signed, but cheap)."""
    data = session.get(PENDING_SECOND_FACTOR)
    return safe_next(data.get("next")) if isinstance(data, dict) else None


def _no_pending():
    session.pop(PENDING_SECOND_FACTOR, None)
    flash("That sign-in has expired. Sign in again.", "error")
    return redirect_to(url_for("auth.login"))


def _throttled(account: Account, form, template: str):
    verdict = ratelimit.hit(CODE_ATTEMPTS, f"{account.organisation.slug}:{account.id}")
    if verdict.allowed:
        return None
    _audit("two_factor.verify", account, "denied", reason="too many attempts")
    form.code.errors = [f"Too many attempts. Try again in {verdict.minutes()} minutes."]
    return _no_store(render(template, form=form, status=429))


def _complete(account: Account, method: str, second_factor: str):
    """Start the real session (a new session id) and record the sign-in."""
    ratelimit.reset(CODE_ATTEMPTS, f"{account.organisation.slug}:{account.id}")
    start_session(account, method)
    _audit("sign_in.completed", account, method=method, second_factor=second_factor)


def _reserve_attempt(account: Account, form, template: str, action: str):
    """Count this code attempt (TOTP or recovery code) before checking it; a refusal
    page when too many were tried or the account is locked, else None.

    Wrong codes count towards the account lockout like wrong passwords (SECURITY.md 10):
    the attempt is reserved before the code is checked, so a locked account's right code
    is refused too, and a right code resets the count."""
    refused = _throttled(account, form, template)
    if refused:
        return refused
    try:
        lockout.reserve(account, lockout.settings_for(account.organisation), ip=client_ip(),
                        user_agent=request.user_agent.string)
    except lockout.Locked as exc:
        _audit(action, account, "denied", reason="locked")
        return _refuse(form, template, str(exc), 429)
    return None


def _refuse(form, template: str, message: str, status: int = 422):
    """The code form again with ``message`` under the field and the typed code cleared."""
    form.code.errors = [message]
    form.code.data = ""
    return _no_store(render(template, form=form, status=status))


@bp.route("/login/totp", methods=["GET", "POST"])
def login_totp():
    """The second factor: a code from the authenticator app."""
    pending = _pending()
    if pending is None:
        return _no_pending()
    account, method = pending
    _remember_next()
    form = CodeForm()
    if request.method == "GET":
        return _no_store(render("account/login_totp.html", form=form))
    if not form.validate():
        return _no_store(render("account/login_totp.html", form=form, status=422))
    refused = _reserve_attempt(account, form, "account/login_totp.html", "two_factor.verify")
    if refused:
        return refused
    if not totp.verify(account, form.code.data):
        _audit("two_factor.verify", account, "failure", reason="wrong or used code")
        return _refuse(form, "account/login_totp.html",
                       "That code is not right, or was already used. Wait for the next code and try again.")
    lockout.succeeded(account)
    target = _pending_next()
    _complete(account, method, "totp")
    return redirect_to(target or url_for("auth.account"))


def _recovery_step(keep: bool):
    """A recovery code instead of the app's code: (account, method) once one is spent,
    or the page to answer with. ``keep``: two-factor stays on (else it is being reset)."""
    pending = _pending()
    if pending is None:
        return None, _no_pending()
    account, method = pending
    _remember_next()
    form = RecoveryForm()
    page = lambda status=200: _no_store(render("account/login_reset.html", form=form, status=status))  # noqa: E731
    if request.method == "GET":
        return None, page()
    if not form.validate():
        return None, page(422)
    refused = _reserve_attempt(account, form, "account/login_reset.html", "two_factor.recovery_code_used")
    if refused:
        return None, refused
    if not recovery_codes.use(account, form.code.data, resets_two_factor=not keep):  # emails the owner
        _audit("two_factor.recovery_code_used", account, "failure", reason="unknown or used recovery code")
        form.code.errors = ["That recovery code is not right, or was already used."]
        form.code.data = ""
        return None, page(422)
    lockout.succeeded(account)
    _audit("two_factor.recovery_code_used", account, kept_two_factor=keep, left=recovery_codes.remaining(account))
    return (account, method), None


@bp.route("/login/totp/recovery", methods=["GET", "POST"])
def login_totp_recovery():
    """No phone at hand: one recovery code signs in instead of the app's code; two-factor
    authentication stays on and the code cannot be used again."""
    spent, answer = _recovery_step(keep=True)
    if answer is not None:
        return answer
    account, method = spent
    target = _pending_next()
    _complete(account, method, "recovery_code")
    left = recovery_codes.remaining(account)
    flash(f"Signed in with a recovery code. {left} recovery code{'s are' if left != 1 else ' is'} left"
          + ("; make new ones soon." if left <= 3 else "."), "warning" if left <= 3 else "info")
    return redirect_to(target or url_for("auth.account"))


@bp.route("/login/totp/reset", methods=["GET", "POST"])
def login_totp_reset():
    """Lost the authenticator: a recovery code turns two-factor authentication off and
    the person must set it up again before anything else."""
    spent, answer = _recovery_step(keep=False)
    if answer is not None:
        return answer
    account, method = spent
    totp.clear(account, must_enrol=True)
    _audit("two_factor.disabled", account, reason="reset with a recovery code at sign-in")
    _complete(account, method, "recovery_code")
    flash("Two-factor authentication was reset. Set it up again to continue.", "warning")
    return redirect_to(url_for("account.two_factor"))


# ----------------------------------------------------------------- account page

def _account() -> Account:
    return Account.get_by_id(current_user.account.id)


@bp.get("/account/2fa")
@login_required
def two_factor():
    """Whether two-factor authentication is on, and what can be done."""
    account = _account()
    return render("account/two_factor.html", account=account, enabled=totp.is_enabled(account),
                  remaining=recovery_codes.remaining(account), form=EmptyForm(), code_form=CodeForm())


def _enrol_page(account: Account, secret: str, uri: str, form, status: int = 200):
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return _no_store(render("account/enrol.html", account=account, secret=secret, grouped_secret=grouped,
                            qr=totp.qr_svg(uri), uri=uri, form=form, status=status))


@bp.post("/account/2fa/enrol")
@login_required
def enrol():
    """A new secret, shown only in this POST response (QR code and text)."""
    if not EmptyForm().validate():
        abort(400)
    account = _account()
    try:
        secret, uri = totp.start_enrolment(account)
    except totp.TotpError:
        flash("Two-factor authentication is already on.", "info")
        return redirect_to(url_for("account.two_factor"))
    _audit("two_factor.enrolment_started", account)
    return _enrol_page(account, secret, uri, CodeForm(formdata=None))


def _codes_page(account: Account, codes: list[str], heading: str):
    return _no_store(render("account/recovery_codes.html", account=account, codes=codes, heading=heading,
                            download=DownloadForm(formdata=None, codes=" ".join(codes))))


@bp.post("/account/2fa/confirm")
@login_required
def confirm():
    """The first code from the app turns two-factor authentication on."""
    account = _account()
    form = CodeForm()
    pending = totp.pending_enrolment(account)
    if pending is None:
        if not form.validate():
            abort(400)
        flash("Start the set-up again." if not totp.is_enabled(account) else "Two-factor authentication is already on.", "info")
        return redirect_to(url_for("account.two_factor"))
    if not form.validate():
        return _enrol_page(account, *pending, form, 422)
    codes = totp.confirm_enrolment(account, form.code.data)
    if codes is None:
        _audit("two_factor.verify", account, "failure", reason="wrong code at enrolment")
        form.code.errors = ["That code is not right. Check the time on your phone and enter the current code."]
        form.code.data = ""
        return _enrol_page(account, *pending, form, 422)
    _audit("two_factor.enrolled", account)
    return _codes_page(account, codes, "Two-factor authentication is on")


@bp.post("/account/2fa/recovery-codes")
@login_required
def regenerate():
    """New recovery codes; the old ones stop working. ``format=txt`` downloads them."""
    if not EmptyForm().validate():
        abort(400)
    account = _account()
    if not totp.is_enabled(account):
        abort(409, "Two-factor authentication is not on.")
    codes = recovery_codes.regenerate(account)
    _audit("two_factor.recovery_codes_regenerated", account)
    if request.form.get("format") == "txt":
        return _text_file(account, codes)
    return _codes_page(account, codes, "New recovery codes")


def _text_file(account: Account, codes: list[str]):
    body = (f"Gatehouse recovery codes for {account.username} ({account.organisation.name})\n"
            "Each code works once. Keep them somewhere safe.\n\n" + "\n".join(codes) + "\n")
    response = make_response(body, 200)
    response.mimetype = "text/plain"
    response.headers["Content-Disposition"] = 'attachment; filename="gatehouse-recovery-codes.txt"'
    return _no_store(response)


@bp.post("/account/2fa/recovery-codes.txt")
@login_required
def download():
    """The codes the page just showed, as a text file (the server keeps only hashes)."""
    form = DownloadForm()
    if not form.validate():
        abort(400)
    codes = form.codes.data.split()
    if not 1 <= len(codes) <= recovery_codes.COUNT or not all(recovery_codes.normalise(c) for c in codes):
        abort(400, "These are not recovery codes.")
    return _text_file(_account(), codes)


@bp.post("/account/2fa/disable")
@login_required
def disable():
    """Turn two-factor authentication off: needs a current code."""
    account = _account()
    form = CodeForm()
    if not totp.is_enabled(account):
        flash("Two-factor authentication is already off.", "info")
        return redirect_to(url_for("account.two_factor"))
    if form.validate() and totp.disable(account, form.code.data):
        _audit("two_factor.disabled", account, reason="turned off by the account holder")
        recovery_codes.notify_owner(account, "Two-factor authentication was turned off",
                                    "Two-factor authentication was just turned off for your account.")
        flash("Two-factor authentication is off.", "success")
        return redirect_to(url_for("account.two_factor"))
    if form.code.data:
        _audit("two_factor.verify", account, "failure", reason="wrong code when turning off")
    form.code.errors = form.code.errors or ["That code is not right, or was already used."]
    form.code.data = ""
    return render("account/two_factor.html", account=account, enabled=True, remaining=recovery_codes.remaining(account),
                  form=EmptyForm(), code_form=form, status=422)
