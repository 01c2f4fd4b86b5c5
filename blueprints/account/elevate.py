"""Elevation (DESIGN 3.8): a team user allowed to elevate becomes an owner for 15 minutes.

    GET, POST /account/elevate        elevate          password (+ code with 2FA) → an owner session
    POST      /account/elevate/end    elevation_end    back to an ordinary session early

The elevated session has a new id (cookie); the old cookie is refused afterwards. A
banner on every page (``elevation`` in the template context, base.html) shows the time
left. When the elevated session runs out the person is signed out; a small marker cookie
lets the next page say why instead of only asking them to sign in.
"""

from __future__ import annotations

from flask import after_this_request, current_app, flash, g, has_request_context, request, session, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from services import elevation, totp

from ..auth.cookies import COOKIE_NAME, client_ip, set_session_cookie
from ..auth.forms import EmptyForm
from ..errors import render_error
from ..rendering import redirect_to, render, wants_partial
from . import bp
from .forms import CODE_KW

# Marks a browser that holds an elevated session, so its ending can be explained (no secret).
MARKER_COOKIE = "gatehouse_elevated"


class ElevateForm(FlaskForm):
    """The account's password again."""

    password = PasswordField("Your password", validators=[
        DataRequired("Enter your password."), Length(max=1024, message="That is too long for a password.")],
        render_kw={"autocomplete": "current-password"})


class ElevateWithCodeForm(ElevateForm):
    """The password and a code from the authenticator app (two-factor authentication on)."""

    code = StringField("Code from your authenticator app", validators=[
        DataRequired("Enter the 6-digit code from your authenticator app."),
        Length(max=32, message="That is not a 6-digit code.")], render_kw=CODE_KW)


def _set_cookies(token: str, elevated: bool) -> None:
    """The new session's cookie (the same attributes as a sign-in's), and the marker
    that this browser holds an elevated session."""
    secure = current_app.config.get("SESSION_COOKIE_SECURE", False)
    set_session_cookie(token)

    @after_this_request
    def _cookies(response):
        if elevated:
            response.set_cookie(MARKER_COOKIE, "1", max_age=int(elevation.LIFETIME.total_seconds()) + 86400,
                                httponly=True, samesite="Lax", secure=secure, path="/")
        else:
            response.delete_cookie(MARKER_COOKIE, path="/")
        return response


def _fresh_flask_session() -> None:
    """Nothing from before carries over (flashes, CSRF token), as at a sign-in."""
    session.clear()
    g.pop("_login_user", None)


def _refused(account, message: str, status: int = 403):
    if wants_partial():
        return render_error(status, title="You can't elevate", message=message)
    return render("account/elevate_refused.html", account=account, message=message, status=status)


def _page(form, status: int = 200, **context):
    account = current_user.account
    return render("account/elevate.html", form=form, account=account, two_factor=totp.is_enabled(account),
                  minutes=elevation.LIFETIME_MINUTES, status=status, **context)


@bp.route("/account/elevate", methods=["GET", "POST"])
@login_required
def elevate():
    """Re-enter the password (and code) to act as an owner for 15 minutes."""
    account = current_user.account
    user_session = current_user.session
    if elevation.is_elevated(user_session):
        return render("account/elevate_active.html", user_session=user_session,
                      minutes_left=elevation.minutes_left(user_session), form=EmptyForm())
    two_factor = totp.is_enabled(account)
    form = ElevateWithCodeForm() if two_factor else ElevateForm()
    why = elevation.refusal(account, user_session)
    if why:
        if request.method == "POST":
            elevation.record_refusal(account, why, ip=client_ip(), user_agent=request.user_agent.string)
        return _refused(account, why)
    if request.method == "GET":
        return _page(form)
    if not form.validate():
        return _page(form, 422)
    try:
        elevated = elevation.elevate(account, user_session, form.password.data, form.code.data if two_factor else None,
                                     ip=client_ip(), user_agent=request.user_agent.string)
    except elevation.NotAllowed as exc:
        return _refused(account, str(exc))
    except elevation.ElevationError as exc:
        form.password.data = ""
        if two_factor:
            form.code.data = ""  # a code is single use: the next try needs the next one
        getattr(form, exc.field if exc.field and hasattr(form, exc.field) else "password").errors = [str(exc)]
        return _page(form, exc.status)
    _fresh_flask_session()
    _set_cookies(elevated.token, True)
    flash(f"You are acting as an owner of {account.organisation.name} until "
          f"{elevated.expires_at:%H:%M} UTC ({elevation.LIFETIME_MINUTES} minutes). "
          "Every action is recorded against your name.", "success")
    return redirect_to(url_for("admin.home"))


@bp.post("/account/elevate/end")
@login_required
def elevation_end():
    """Back to an ordinary session of the account's own role (a new session id)."""
    account = current_user.account
    try:
        token = elevation.drop(account, current_user.session, ip=client_ip(), user_agent=request.user_agent.string)
    except elevation.NotAllowed as exc:
        flash(str(exc), "info")
        return redirect_to(url_for("auth.account"))
    _fresh_flask_session()
    _set_cookies(token, False)
    flash(f"Elevation ended: you are signed in as a {account.role} user again.", "success")
    return redirect_to(url_for("auth.account"))


@bp.before_app_request
def _explain_ended_elevation():
    """A browser whose elevated session ran out is signed out; say so once, on whatever
    page it lands (the sign-in page, usually). Only browsers that elevated carry the
    marker, so other requests cost nothing."""
    if MARKER_COOKIE not in request.cookies or request.endpoint in (None, "static"):
        return None
    if request.endpoint != "auth.logout" and current_user.is_authenticated and elevation.is_elevated(current_user.session):
        return None  # still elevated
    if request.endpoint != "auth.logout" and not current_user.is_authenticated:
        ended = elevation.ended_elevation(request.cookies.get(COOKIE_NAME))
        if ended is not None:
            flash(f"Your owner session ended at {ended.expires_at:%H:%M} UTC: elevation lasts "
                  f"{elevation.LIFETIME_MINUTES} minutes, after which you are signed out. Sign in again to go on.",
                  "warning")

    @after_this_request
    def _forget(response):
        response.delete_cookie(MARKER_COOKIE, path="/")
        return response

    return None


@bp.app_context_processor
def _elevation_banner():
    """``elevation`` for base.html's banner: the acting role and the minutes left (server clock)."""
    if not has_request_context() or not current_user or not current_user.is_authenticated:
        return {"elevation": None}
    user_session = current_user.session
    if not elevation.is_elevated(user_session):
        return {"elevation": None}
    return {"elevation": {"role": user_session.acting_role, "minutes_left": elevation.minutes_left(user_session),
                          "seconds_left": elevation.seconds_left(user_session),
                          "ends_at_text": f"{user_session.expires_at:%H:%M} UTC"}}
