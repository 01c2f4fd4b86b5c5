"""URL map: ``/invitation/<token>`` (GET shows the set-password form, POST accepts the
invitation), ``/invitation/<token>/check`` (the live password checklist, HTMX).

Opening the link never changes anything (mail scanners open links too); only the POST
with a password that meets the organisation's policy uses it. Then the account is active
and this browser is signed in as it. A link used twice, replaced by a resent one,
expired or unknown gets a page that says which, and what to do.
"""

from __future__ import annotations

from flask import flash, request, url_for

from services import audit, invitations, password_policy, sessions

from ..rendering import redirect_to, render
from . import bp
from .cookies import COOKIE_NAME, client_ip, sign_in
from .routes import ResetPasswordForm, linked_password_form

GONE_STATUS = {"unknown": 404, "used": 410, "expired": 410}


def _gone(state: str, account=None):
    return render("auth/invitation_gone.html", state=state, message=invitations.GONE[state], account=account,
                  status=GONE_STATUS[state])


def _text(name: str) -> str:
    value = request.form.get(name, "")
    return value if isinstance(value, str) else ""


@bp.route("/invitation/<token>", methods=["GET", "HEAD", "POST"])
def invitation_accept(token: str):
    """GET shows who is invited and asks for a password (never uses the link); POST sets
    the password, activates the account and signs this browser in."""
    found = invitations.lookup(token)
    if found.state != "valid":
        return _gone(found.state, found.account)
    account = found.account
    policy = password_policy.policy_for(account.organisation)
    form = ResetPasswordForm()
    context = {"token": token, "account": account, "rules": password_policy.check("", account, policy),
               "expires_at": found.row.expires_at}
    answer = linked_password_form("auth/invitation.html", form, context)
    if answer is not None:
        return answer
    try:
        account = invitations.accept(token, form.new.data, ip=client_ip(), user_agent=request.user_agent.string)
    except invitations.InvitationError as exc:
        if exc.state:
            return _gone(exc.state, account)
        form.new.errors = [str(exc) + " " + "; ".join(exc.problems) + "."]
        context["rules"] = password_policy.check(form.new.data, account, policy)
        return render("auth/invitation.html", form=form, status=422, **context)
    # Whoever was signed in in this browser before is signed out: the new account takes over.
    sessions.end(request.cookies.get(COOKIE_NAME))
    second_factor = sign_in(account, "invitation")
    if second_factor:  # cannot happen for a fresh account; kept for safety
        return redirect_to(second_factor)
    audit.record("sign_in.completed", actor=account.username, target=account.username,
                 organisation=account.organisation.slug, ip=client_ip(), user_agent=request.user_agent.string,
                 details={"method": "invitation"})
    flash(f"Welcome, {account.display_name or account.username}: your account is ready and you are signed in.", "success")
    return redirect_to(url_for("admin.home") if account.role in ("owner", "technician", "team") else url_for("auth.account"))


@bp.post("/invitation/<token>/check")
def invitation_check(token: str):
    """Which rules of the organisation's policy the typed password meets (stores nothing)."""
    found = invitations.lookup(token)
    if found.state != "valid":
        return render("auth/reset_rules.html", rules=[], typed=False)
    account = found.account
    password = _text("new")[:2048]
    rules = password_policy.check(password, account, password_policy.policy_for(account.organisation))
    return render("auth/reset_rules.html", rules=rules, typed=bool(password))
