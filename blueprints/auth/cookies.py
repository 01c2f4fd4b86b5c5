"""The sign-in cookie: flask-login reads the account from the server-side session it names."""

from __future__ import annotations

import time

from flask import Flask, after_this_request, current_app, g, request, session
from flask_login import LoginManager

from models import Account
from services import access, mfa_policy, sessions

COOKIE_NAME = "gatehouse_session"
login_manager = LoginManager()


class SignedInUser:
    """The flask-login user: an account plus the session it signed in with."""

    def __init__(self, user_session):
        self.session = user_session
        self.account = user_session.account

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.account.id)

    @property
    def role(self) -> str:
        """The role this session acts with: the account's, or the one it was elevated to."""
        return self.session.acting_role or self.account.role

    @property
    def grant_role(self) -> str:
        """The role that bounds what this person may give others (roles, permissions,
        elevation): always the account's own. Elevation opens the owner's pages for a
        while; it never lets someone make that power permanent."""
        return self.account.role

    @property
    def is_admin(self) -> bool:
        """Owners and technicians (and elevated sessions) manage the organisation's settings."""
        return self.role in ("owner", "technician")

    @property
    def is_console_user(self) -> bool:
        """Whether the admin console opens at all (owners, technicians, team users)."""
        return access.is_admin_role(self.role)

    def can(self, capability: str) -> bool:
        """Whether this session may use admin pages needing ``capability``."""
        return access.can(self.role, capability, self.account.permissions or ())


def init_app(app: Flask) -> None:
    """Install flask-login with the cookie-based loader."""
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Sign in to see that page."
    login_manager.login_message_category = "info"

    @login_manager.user_loader
    def _never(_user_id):
        # Accounts are only ever loaded from the server-side session cookie.
        return None

    @login_manager.request_loader
    def _from_cookie(req):
        user_session = sessions.load(req.cookies.get(COOKIE_NAME))
        return SignedInUser(user_session) if user_session else None


def client_ip() -> str:
    """The client's address as the WSGI server saw it (ProxyFix decides what to trust)."""
    return request.remote_addr or ""


# The second-factor step: a sign-in waiting for it is remembered in the Flask session.
SECOND_FACTOR_URL = "/login/totp"
PENDING_SECOND_FACTOR = "pending_second_factor"
PENDING_LIFETIME = 300  # seconds


def sign_in(account, method: str) -> str | None:
    """Sign ``account`` in, or, when it has two-factor authentication on, only remember
    the pending sign-in (account, method, 5 minutes) and return the URL of the
    second-factor step, where the caller must send the browser. None when signed in."""
    if account.totp_enabled_at is not None:
        sign_out()  # an earlier session in this browser ends: nothing carries over
        g.pop("_login_user", None)
        session[PENDING_SECOND_FACTOR] = {"account": account.id, "method": method,
                                          "expires": int(time.time()) + PENDING_LIFETIME}
        return SECOND_FACTOR_URL
    if not account.must_enrol_totp and mfa_policy.requires_enrolment(account):
        # Enforced by the organisation: the enrolment guard sends this session to /account/2fa.
        Account.update(must_enrol_totp=True).where(Account.id == account.id).execute()
        account.must_enrol_totp = True
    start_session(account, method)
    return None


def start_session(account, method: str) -> None:
    """Start a new server-side session for ``account`` and set its cookie on this response.

    The Flask session (flashes, CSRF token) is cleared too, so nothing from before the
    sign-in carries over."""
    token = sessions.start(account, method, ip=client_ip(), user_agent=request.user_agent.string)
    session.clear()
    g.pop("_login_user", None)
    set_session_cookie(token)


def set_session_cookie(token: str) -> None:
    """Put the server-side session's token in this response's cookie (HttpOnly, Lax,
    Secure outside development)."""

    @after_this_request
    def _set_cookie(response):
        response.set_cookie(
            COOKIE_NAME, token, httponly=True, samesite="Lax",
            secure=current_app.config.get("SESSION_COOKIE_SECURE", False), path="/",
        )
        return response


def sign_out() -> None:
    """End the current server-side session and remove its cookie."""
    sessions.end(request.cookies.get(COOKIE_NAME))
    session.clear()

    @after_this_request
    def _clear_cookie(response):
        response.delete_cookie(COOKIE_NAME, path="/")
        return response
