"""URL map: ``/login`` (identifier first), ``/login/password``, ``/logout``, ``/account``."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, request, url_for
from flask_login import current_user, login_required

from services import accounts, audit, passwords

from ..rendering import redirect_to, render
from . import bp
from .cookies import client_ip, sign_in, sign_out
from .forms import EmptyForm, IdentifierForm, PasswordSignInForm


def safe_next(target: str | None) -> str | None:
    """``target`` when it is a path on this site (never another host or scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else None


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Identifier-first sign-in page: the identifier, then a method."""
    form = IdentifierForm()
    if form.is_submitted():
        if not form.validate():
            return render("auth/login.html", form=form, status=422)
        if request.form.get("method") == "password":
            return redirect_to(url_for("auth.login_password", identifier=form.identifier.data, next=request.args.get("next")))
        # Email sign-in is not set up yet: the same answer for every identifier, known or not.
        return render("auth/login.html", form=form, unavailable=True)
    return render("auth/login.html", form=form)


@bp.route("/login/password", methods=["GET", "POST"])
def login_password():
    """Sign in with a local account's password."""
    form = PasswordSignInForm()
    if request.method == "GET":
        form.identifier.data = request.args.get("identifier", "")[:256]
        form.next.data = safe_next(request.args.get("next")) or ""
        return render("auth/password.html", form=form)
    if not form.validate():
        return render("auth/password.html", form=form, status=422)
    account = accounts.find_local(None, form.identifier.data)
    usable = account is not None and account.status == "active"
    if not passwords.check_password(account if usable else None, form.password.data) or not usable:
        audit.record(
            "sign_in.password", actor=form.identifier.data[:320], target=form.identifier.data[:320],
            organisation=account.organisation.slug if account else None, ip=client_ip(),
            user_agent=request.user_agent.string, outcome="failure", details={"reason": "wrong username or password"},
        )
        form.password.errors = ["Wrong username or password."]
        form.password.data = ""
        return render("auth/password.html", form=form, status=422)
    sign_in(account, "password")
    audit.record(
        "sign_in.completed", actor=account.username, target=account.username, organisation=account.organisation.slug,
        ip=client_ip(), user_agent=request.user_agent.string, details={"method": "password"},
    )
    return redirect_to(safe_next(form.next.data) or url_for("auth.account"))


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
