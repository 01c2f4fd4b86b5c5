"""URL map (under /admin), for owners and technicians (the blueprint's guard):

    GET/POST  /mfa-policy           mfa_policy_edit    mode and chosen accounts; ?q= searches (no JS)
    GET       /mfa-policy/search    mfa_policy_search  accounts matching ?q= (fragment, "Add" buttons)
    GET       /mfa-policy/pick      mfa_policy_pick    one chosen account ?account=<id> (fragment)
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from wtforms import RadioField

from models import MFA_MODES, Account
from services import mfa_policy

from ..rendering import redirect_to, render
from . import actor, bp, organisation, requires

TEMPLATE = "admin/mfa_policy/edit.html"


class MfaPolicyForm(FlaskForm):
    """Who must use two-factor authentication; the accounts come as ``accounts`` checkboxes."""

    mode = RadioField("Two-factor enforcement", choices=[(m, mfa_policy.MODE_LABELS[m]) for m in MFA_MODES],
                      default="off")


def _query() -> str:
    q = request.args.get("q", "")
    return q.strip()[:mfa_policy.MAX_QUERY] if isinstance(q, str) else ""


def _chosen_from_form() -> list[Account]:
    """The checked accounts of this organisation (unknown ids are refused on save)."""
    ids = []
    for raw in request.form.getlist("accounts"):
        try:
            ids.append(int(raw))
        except ValueError:
            continue
    if not ids:
        return []
    return list(Account.select().where((Account.id.in_(ids)) & (Account.organisation == organisation()))
                .order_by(Account.username))


@bp.route("/mfa-policy", methods=["GET", "POST"])
@requires("settings")
def mfa_policy_edit():
    """The organisation's two-factor enforcement."""
    org = organisation()
    policy = mfa_policy.policy_for(org)
    form = MfaPolicyForm()
    query = _query()
    if form.is_submitted():
        chosen = _chosen_from_form()
        error = None
        if form.validate():
            try:
                mfa_policy.save(org, form.mode.data, request.form.getlist("accounts"), actor=actor())
            except mfa_policy.InvalidPolicy as exc:
                error = str(exc)
            else:
                flash("Saved the two-factor enforcement.", "success")
                return redirect_to(url_for("admin.mfa_policy_edit"))
        return render(TEMPLATE, form=form, chosen=chosen, query=query, results=[], error=error, status=422)
    form.mode.data = policy.mode if policy.mode in MFA_MODES else "off"
    chosen = mfa_policy.listed_accounts(policy)
    chosen_ids = {a.id for a in chosen}
    results = [a for a in mfa_policy.search_accounts(org, query) if a.id not in chosen_ids] if query else []
    return render(TEMPLATE, form=form, chosen=chosen, query=query, results=results, error=None)


@bp.get("/mfa-policy/search")
@requires("settings")
def mfa_policy_search():
    """Search-as-you-type results; a plain browser gets the page with the results."""
    query = _query()
    if not request.htmx:
        return redirect(url_for("admin.mfa_policy_edit", q=query or None))
    chosen = set(request.args.getlist("accounts"))
    results = [a for a in mfa_policy.search_accounts(organisation(), query, limit=20 + len(chosen))
               if str(a.id) not in chosen][:20]
    return render_template("admin/mfa_policy/_results.html", results=results, query=query, htmx=True)


@bp.get("/mfa-policy/pick")
@requires("settings")
def mfa_policy_pick():
    """One account as a checked entry of the chosen list (the "Add" button)."""
    try:
        account_id = int(request.args.get("account", ""))
    except ValueError:
        abort(404)
    account = Account.get_or_none((Account.id == account_id) & (Account.organisation == organisation()))
    if account is None:
        abort(404)
    return render_template("admin/mfa_policy/_picked.html", account=account)
