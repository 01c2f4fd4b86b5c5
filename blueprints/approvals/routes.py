"""URL map:

    GET       /login/wait/<id>            wait_page        "Check your email" / "Waiting for manager approval"
    GET       /login/wait/<id>/status     wait_status      polled every 2 s (HTMX); never changes state
    POST      /login/wait/<id>/finish     wait_finish      the binding browser takes its session
    POST      /login/wait/<id>/cancel     wait_cancel
    GET, HEAD /l/<token>                  link_page        confirmation page only (mail scanners fetch links)
    POST      /l/<token>                  link_decide      action=approve (Sign in) | deny (This wasn't me)
    GET, HEAD /a/<token>                  approval_page    the manager's page
    POST      /a/<token>                  approval_decide  action=approve | deny
"""

from __future__ import annotations

from flask import abort, current_app, flash, request, url_for
from flask_login import current_user

from models import SignInRequest
from services import audit, signin, signin_requests

from ..auth.cookies import client_ip, sign_in
from ..auth.forms import EmptyForm
from ..rendering import redirect_to, render
from . import bp

BINDING_COOKIE = "gatehouse_signin"
FINAL_MESSAGES = {
    "denied": "This sign-in was denied.",
    "expired": "This sign-in link has expired.",
    "cancelled": "This sign-in was cancelled.",
    "completed": "This sign-in has already been used.",
}


def set_binding_cookie(response, secret: str, max_age: int):
    """The HttpOnly cookie that ties a sign-in request to the browser that asked for it."""
    response.set_cookie(BINDING_COOKIE, secret, max_age=max_age, httponly=True, samesite="Lax",
                        secure=current_app.config.get("SESSION_COOKIE_SECURE", False), path="/")
    return response


def binding_secret() -> str | None:
    return request.cookies.get(BINDING_COOKIE)


def _waiting_request(public_id: str) -> SignInRequest:
    found = signin_requests.by_public_id(public_id)
    if found is None:
        abort(404, "This sign-in is not known here. Start again from the sign-in page.")
    return found


def _context(found: SignInRequest):
    signin.expire(found, ip=client_ip(), user_agent=request.user_agent.string)  # audits an expiry once
    status = signin_requests.status_for(found, binding_secret())
    if status is None and found.status == "completed" and current_user.is_authenticated \
            and current_user.account.id == found.account_id:
        # Finished from the emailed link in another tab of this browser, which took the
        # session and dropped the binding cookie: this tab is signed in too.
        status = "signed_in"
    return {"sign_in": found, "state": status, "masked_approver": signin.mask_email(found.approver_email),
            "form": EmptyForm()}


@bp.get("/login/wait/<public_id>")
def wait_page(public_id: str):
    """The page the browser waits on; it polls the status and finishes by itself."""
    found = _waiting_request(public_id)
    context = _context(found)
    if context["state"] is None:
        return render("approvals/wait.html", other_browser=True, **context)
    if found.followed_by_id:
        return redirect_to(url_for("approvals.wait_page", public_id=found.followed_by.public_id))
    return render("approvals/wait.html", **context)


@bp.get("/login/wait/<public_id>/status")
def wait_status(public_id: str):
    """The status block of the waiting page (reading it changes nothing)."""
    found = _waiting_request(public_id)
    context = _context(found)
    if found.followed_by_id and context["state"] is not None:
        return redirect_to(url_for("approvals.wait_page", public_id=found.followed_by.public_id))
    response = render("approvals/wait.html", **context)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/login/wait/<public_id>/finish")
def wait_finish(public_id: str):
    """Hand the session to this browser if it holds the binding of an approved request."""
    found = _waiting_request(public_id)
    if EmptyForm().validate() and found.account is not None and signin_requests.complete(found, binding_secret()):
        return _finish(found, "manager_approval" if found.kind == "manager" else "email_link")
    flash("This sign-in cannot be finished in this browser. Start again from the sign-in page.", "error")
    return redirect_to(url_for("auth.login"))


@bp.post("/login/wait/<public_id>/cancel")
def wait_cancel(public_id: str):
    """The person gives up waiting."""
    found = _waiting_request(public_id)
    if EmptyForm().validate() and signin_requests.cancel(found, binding_secret()):
        audit.record("sign_in.cancelled", actor=found.account.username if found.account else "",
                     organisation=found.organisation.slug, target=found.account.username if found.account else "",
                     ip=client_ip(), user_agent=request.user_agent.string, details={"request": found.public_id})
    flash("The sign-in was cancelled.", "info")
    return redirect_to(url_for("auth.login"))


def _link_context(token: str, kind: str):
    found = signin_requests.by_token(token)
    if found is not None:
        found = signin.expire(found, ip=client_ip(), user_agent=request.user_agent.string)
    if found is None or found.kind != kind or found.account is None:
        return None
    return found


def _viewed(found: SignInRequest, page: str) -> None:
    audit.record("sign_in.link_viewed", actor="link holder", organisation=found.organisation.slug,
                 target=found.account.username, ip=client_ip(), user_agent=request.user_agent.string,
                 details={"request": found.public_id, "page": page})


def _link_gone(found: SignInRequest | None, status: int = 410):
    state = "unknown" if found is None else ("expired" if found.status == "expired" else "used")
    return render("approvals/link_gone.html", state=state, sign_in=found, status=404 if found is None else status)


@bp.route("/l/<token>", methods=["GET", "HEAD"])
def link_page(token: str):
    """What the emailed link shows: who, when, from where, and two buttons. A GET or HEAD
    never changes the request, because mail scanners open links on their own."""
    found = _link_context(token, "user")
    if found is None or found.status != "pending":
        return _link_gone(found)
    _viewed(found, "link")
    return render("approvals/link.html", sign_in=found, token=token, form=EmptyForm(),
                  browser=signin.describe_browser(found.user_agent), same_browser=signin_requests.status_for(found, binding_secret()) is not None)


def _decide(token: str, kind: str, choices: str, expired_reason: str):
    """Apply the POSTed decision (approve / deny) to the link's request of ``kind``.
    Returns (outcome, request, None), or (None, None, the page to show instead)."""
    if not EmptyForm().validate():
        abort(400)
    action = request.form.get("action")
    if action not in ("approve", "deny"):
        abort(400, f"Choose {choices}.")
    signin.expire(signin_requests.by_token(token), ip=client_ip(), user_agent=request.user_agent.string)
    outcome, found = (signin_requests.approve if action == "approve" else signin_requests.deny)(token, kind)
    if found is None or found.account is None:
        return None, None, _link_gone(None)
    if outcome not in ("approved", "denied"):
        if outcome == "expired":
            signin.notify_failure(found, found.account, expired_reason)
        return None, None, _link_gone(found)
    return outcome, found, None


def _finish(found: SignInRequest, method: str):
    """Sign this browser in for ``found`` and go to the account page."""
    next_step = sign_in(found.account, method)
    if next_step is None:  # else the second-factor step records sign_in.completed
        audit.record("sign_in.completed", actor=found.account.username, organisation=found.organisation.slug,
                     target=found.account.username, ip=client_ip(), user_agent=request.user_agent.string,
                     details={"request": found.public_id, "method": method})
    response = redirect_to(next_step or url_for("auth.account"))
    response.delete_cookie(BINDING_COOKIE, path="/")
    return response


@bp.post("/l/<token>")
def link_decide(token: str):
    """Sign in (approve; in the browser that asked, the session starts here) or deny."""
    outcome, found, page = _decide(token, "user", "Sign in or This wasn't me", "the sign-in link expired before it was used")
    if page is not None:
        return page
    audit.record("sign_in.confirmed" if outcome == "approved" else "sign_in.denied", actor=found.account.username,
                 organisation=found.organisation.slug, target=found.account.username, ip=client_ip(),
                 user_agent=request.user_agent.string, outcome="success" if outcome == "approved" else "denied",
                 details={"request": found.public_id})
    if outcome == "denied":
        signin.notify_failure(found, found.account, "the user said the sign-in was not them")
        return render("approvals/decided.html", decision="denied", sign_in=found)
    if found.escalate:
        try:
            follower = signin.escalate(found)
        except (signin.NoApprover, signin.Throttled) as exc:
            # Without a manager step the sign-in must not go on: end it.
            signin_requests.abandon(found)
            return render("approvals/decided.html", decision="no_approver", message=str(exc), sign_in=found)
        if signin_requests.status_for(found, binding_secret()) is not None:
            return redirect_to(url_for("approvals.wait_page", public_id=follower.public_id))
        return render("approvals/decided.html", decision="escalated", sign_in=follower,
                      masked_approver=signin.mask_email(follower.approver_email))
    if signin_requests.complete(found, binding_secret()):
        return _finish(found, "email_link")
    return render("approvals/decided.html", decision="approved_elsewhere", sign_in=found)


@bp.route("/a/<token>", methods=["GET", "HEAD"])
def approval_page(token: str):
    """The manager's view of a sign-in request, with Approve and Deny."""
    found = _link_context(token, "manager")
    if found is None or found.status != "pending":
        return _link_gone(found)
    _viewed(found, "approval")
    return render("approvals/approve.html", sign_in=found, token=token, form=EmptyForm(),
                  department=signin.department_of(found.account), browser=signin.describe_browser(found.user_agent))


@bp.post("/a/<token>")
def approval_decide(token: str):
    """The manager approves or denies; the waiting browser learns it on its next poll."""
    outcome, found, page = _decide(token, "manager", "Approve or Deny", "the approval request expired")
    if page is not None:
        return page
    audit.record("sign_in.approved" if outcome == "approved" else "sign_in.denied", actor=found.approver_email or "",
                 organisation=found.organisation.slug, target=found.account.username, ip=client_ip(),
                 user_agent=request.user_agent.string, outcome="success" if outcome == "approved" else "denied",
                 details={"request": found.public_id, "by": "manager"})
    # A manager who denied needs no notice of it: the failure notice is for failures they did not see.
    return render("approvals/decided.html", decision=f"manager_{outcome}", sign_in=found)
