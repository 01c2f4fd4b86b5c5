"""URL map (under /admin), all for owners and technicians (capability ``team``):

    GET       /team                          team_list            (q, status; block team_table)
    GET/POST  /team/new                      team_create          (mode=invite | create)
    GET/POST  /team/<id>/edit                team_edit
    POST      /team/<id>/resend              team_resend          (Resend invitation)
    POST      /team/<id>/reset-password      team_reset_password
    GET/POST  /team/<id>/reset-2fa           team_reset_two_factor  (GET asks, POST does)
    GET/POST  /team/<id>/deactivate          team_deactivate        (GET asks, POST does)
    GET/POST  /team/<id>/reactivate          team_reactivate        (GET asks, POST does)
    GET/POST  /team/<id>/delete              team_delete            (GET asks, POST does)
    GET/POST  /team/bulk                     team_bulk            (action=deactivate|delete, ids=…; GET asks)

Who may do what to whom is decided by services/team.py; the list offers only the
actions that would work, and a refused one says why.
"""

from __future__ import annotations

from flask import abort, current_app, flash, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, SelectMultipleField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp
from wtforms.widgets import CheckboxInput, ListWidget

from services import access, team
from services.accounts import EMAIL

from ..auth.cookies import client_ip
from ..rendering import redirect_to, render
from . import acting_for, actor, bp, organisation, requires
from .forms import EmptyForm

ACTION_WORDS = {
    "resend": "Resend invitation",
    "reset_password": "Reset password",
    "reset_2fa": "Reset 2FA",
    "deactivate": "Deactivate",
    "reactivate": "Reactivate",
    "delete": "Delete",
}


class MultiCheckboxField(SelectMultipleField):
    """A list of checkboxes."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class MemberForm(FlaskForm):
    """Invite or create a technician or team user."""

    organisation = SelectField("Organisation", coerce=int, validate_choice=True)
    username = StringField("Username", validators=[
        DataRequired("Enter a username."), Length(max=256, message="A username is at most 256 characters."),
        Regexp(r"^[\w.@+-]+$", message="A username is letters, digits or . _ @ + - (no spaces)."),
    ], render_kw={"autocapitalize": "none", "spellcheck": "false", "autocomplete": "off"})
    email = StringField("Email", validators=[
        DataRequired("Enter their email address."), Length(max=320, message="That is too long for an email address."),
        Regexp(EMAIL, message="Enter one email address, like name@example.com."),
    ], render_kw={"type": "email", "autocomplete": "off", "autocapitalize": "none", "spellcheck": "false"})
    display_name = StringField("Name", validators=[Optional(), Length(max=200, message="A name is at most 200 characters.")])
    role = SelectField("Role", default="technician")
    may_elevate = BooleanField("Allow this team user to elevate to owner")
    permissions = MultiCheckboxField("Extra permissions", choices=[])


class EditForm(FlaskForm):
    """Change a technician or team user."""

    display_name = StringField("Name", validators=[Optional(), Length(max=200, message="A name is at most 200 characters.")])
    email = StringField("Email", validators=[
        Optional(), Length(max=320, message="That is too long for an email address."),
        Regexp(EMAIL, message="Enter one email address, like name@example.com."),
    ], render_kw={"type": "email", "autocapitalize": "none", "spellcheck": "false"})
    role = SelectField("Role")
    may_elevate = BooleanField("Allow this team user to elevate to owner")
    permissions = MultiCheckboxField("Extra permissions", choices=[])


def _actor() -> team.Actor:
    return team.Actor(account=current_user.account, role=current_user.role, name=actor(), acting_for=acting_for(),
                      ip=client_ip(), user_agent=request.user_agent.string, grant_role=current_user.grant_role)


def _member(account_id: int):
    """A technician or team user the admin manages, or 404 (as if it did not exist)."""
    account = access.manageable_account(organisation(), account_id)
    if account is None or account.role not in team.TEAM_ROLES:
        abort(404)
    return account


def _server_url() -> str:
    # Links are built from the configured server URL, never from the Host header.
    return current_app.config["SERVER_URL"]


def _role_choices(roles):
    return [(role, team.ROLE_LABELS[role]) for role in roles]


def _permission_choices(who: team.Actor):
    return [(name, team.PERMISSION_LABELS.get(name, name)) for name in team.grantable_permissions(who)]


def _fail(exc: team.TeamError) -> None:
    flash(str(exc), "error")


@bp.get("/team")
@requires("team")
def team_list():
    """Owners, technicians and team users of this organisation and those below it."""
    who = _actor()
    search = request.args.get("q", "")[:100]
    status = request.args.get("status", "")
    status = status if status in team.STATUS_LABELS else ""
    members = team.members(organisation(), search=search, status=status)
    rows = [(member, team.available(member, who)) for member in members]
    several = len(team.managed_organisations(organisation())) > 1
    return render("admin/team/list.html", rows=rows, search=search, status_filter=status, several_organisations=several,
                  me=current_user.account, statuses=team.STATUS_LABELS, roles=team.ROLE_LABELS, words=ACTION_WORDS,
                  audit_link="admin.audit_list" in current_app.view_functions)


@bp.route("/team/new", methods=["GET", "POST"])
@requires("team")
def team_create():
    """Invite a technician or team user (emailed link, pending until used), or create one
    with a generated password shown once."""
    who = _actor()
    form = MemberForm()
    orgs = team.managed_organisations(organisation())
    form.organisation.choices = [(org.id, f"{org.name} ({org.slug})") for org in orgs]
    form.role.choices = _role_choices(team.grantable_roles(who.granting))
    form.permissions.choices = _permission_choices(who)
    template = "admin/team/new.html"
    context = {"can_elevate": who.granting == "owner", "several_organisations": len(orgs) > 1}
    if not form.is_submitted():
        form.organisation.data = organisation().id
        return render(template, form=form, **context)
    mode = request.form.get("mode", "invite")
    if not form.validate() or mode not in ("invite", "create"):
        return render(template, form=form, status=422, **context)
    new = team.NewMember(
        organisation_id=form.organisation.data, username=form.username.data.strip(), email=form.email.data.strip(),
        display_name=form.display_name.data or "", role=form.role.data, may_elevate=bool(form.may_elevate.data),
        permissions=list(form.permissions.data or ()),
    )
    try:
        if mode == "invite":
            account, sendable = team.invite(who, new, server_url=_server_url())
        else:
            account, password = team.create_with_password(who, new)
    except team.TeamError as exc:
        getattr(form, exc.field or "username").errors = [str(exc)]
        return render(template, form=form, status=422, **context)
    if mode == "create":
        response = render("admin/team/created.html", account=account, password=password,
                          login_url=url_for("auth.login_password", identifier=account.username,
                                            account_id=account.organisation.slug, _external=False),
                          roles=team.ROLE_LABELS)
        response.headers["Cache-Control"] = "no-store"
        return response
    if sendable:
        flash(f"Invited {account.username}: an email with a link to choose a password is on its way to "
              f"{account.email}. The link works for 7 days.", "success")
    else:
        flash(f"Invited {account.username}, but {account.organisation.name} has no mail server yet: the invitation "
              "waits in the outbox until one is added.", "warning")
    return redirect_to(url_for("admin.team_list"))


@bp.route("/team/<int:account_id>/edit", methods=["GET", "POST"])
@requires("team")
def team_edit(account_id: int):
    """Change a member's name, email, role, elevation and permissions."""
    who = _actor()
    account = _member(account_id)
    refused = team.refusal("edit", account, who)
    if refused:
        flash(refused[0].upper() + refused[1:] + ".", "error")
        return redirect_to(url_for("admin.team_list"))
    form = EditForm(obj=account)
    roles = team.grantable_roles(who.granting)
    if account.role not in roles:
        roles = [account.role, *roles]
    form.role.choices = _role_choices([r for r in team.TEAM_ROLES if r in roles])
    form.permissions.choices = _permission_choices(who)
    can_elevate = who.granting == "owner"
    template = "admin/team/edit.html"
    context = {"account": account, "can_elevate": can_elevate, "is_self": account.id == who.account.id,
               "actions": team.available(account, who), "roles": team.ROLE_LABELS, "words": ACTION_WORDS}
    if not form.is_submitted():
        return render(template, form=form, **context)
    if not form.validate():
        return render(template, form=form, status=422, **context)
    try:
        team.update(
            who, account, display_name=form.display_name.data or "",
            email=form.email.data if account.source == "local" else None, role=form.role.data,
            may_elevate=bool(form.may_elevate.data) if can_elevate else None,
            # Permissions the admin may not give are not on the form: keep the stored ones.
            permissions=(sorted(set(form.permissions.data or ()) | (set(account.permissions or ()) - {c for c, _ in form.permissions.choices})))
            if form.permissions.choices else None,
        )
    except team.TeamError as exc:
        getattr(form, exc.field or "display_name").errors = [str(exc)]
        return render(template, form=form, status=422, **context)
    flash(f"Saved {account.username}.", "success")
    return redirect_to(url_for("admin.team_list"))


@bp.post("/team/<int:account_id>/resend")
@requires("team")
def team_resend(account_id: int):
    """Resend the invitation (pending only): a new link, the old one stops working."""
    account = _member(account_id)
    if EmptyForm().validate():
        try:
            sendable = team.resend(_actor(), account, server_url=_server_url())
        except team.TeamError as exc:
            _fail(exc)
        else:
            flash(f"Sent a new invitation to {account.email}; the earlier link no longer works."
                  + ("" if sendable else " It waits in the outbox until a mail server is added."),
                  "success" if sendable else "warning")
    return redirect_to(url_for("admin.team_list"))


@bp.post("/team/<int:account_id>/reset-password")
@requires("team")
def team_reset_password(account_id: int):
    """Email the member a single-use link to choose a new password."""
    account = _member(account_id)
    if EmptyForm().validate():
        try:
            team.reset_password(_actor(), account)
        except team.TeamError as exc:
            _fail(exc)
        else:
            flash(f"Sent {account.username} an email with a link to choose a new password (valid for one hour).", "success")
    return redirect_to(url_for("admin.team_list"))


# action -> (service, question, what happens, button, done message)
CONFIRMATIONS = {
    "reset_2fa": (team.reset_two_factor, "Reset two-factor authentication of {name}?",
                  ["Their authenticator app and recovery codes stop working.", "They are signed out everywhere.",
                   "They are emailed, and set up two-factor authentication again at their next sign-in."],
                  "Reset 2FA", "Reset the two-factor authentication of {name}; they have been emailed."),
    "deactivate": (team.deactivate, "Deactivate {name}?",
                   ["They can no longer sign in; every session of theirs ends now.",
                    "Their pending sign-in requests are cancelled and links already emailed to them stop working.",
                    "You can reactivate them later."],
                   "Deactivate", "Deactivated {name}."),
    "reactivate": (team.reactivate, "Reactivate {name}?",
                   ["They can sign in again with their password."], "Reactivate", "Reactivated {name}."),
    "delete": (team.delete, "Delete {name}?",
               ["The account and everything that belongs to it are removed. This cannot be undone.",
                "The audit log keeps what they did."],
               "Delete", "Deleted {name}."),
}


def _confirm(account_id: int, action: str):
    account = _member(account_id)
    who = _actor()
    service, question, consequences, button, done = CONFIRMATIONS[action]
    form = EmptyForm()
    name = account.display_name or account.username
    if request.method == "POST" and form.validate():
        try:
            service(who, account)
        except team.TeamError as exc:
            _fail(exc)
        else:
            flash(done.format(name=account.username), "success")
        return redirect_to(url_for("admin.team_list"))
    problem = team.refusal(action, account, who)
    return render("admin/team/confirm.html", form=form, title=question.format(name=name), accounts=[account],
                  consequences=consequences, button=f"{button} {account.username}", danger=action != "reactivate",
                  problems=[(account.username, problem)] if problem else [], roles=team.ROLE_LABELS,
                  action_url=request.path, ids=[], bulk_action=None)


@bp.route("/team/<int:account_id>/reset-2fa", methods=["GET", "POST"])
@requires("team")
def team_reset_two_factor(account_id: int):
    """GET asks for confirmation (works without JavaScript); POST resets 2FA."""
    return _confirm(account_id, "reset_2fa")


@bp.route("/team/<int:account_id>/deactivate", methods=["GET", "POST"])
@requires("team")
def team_deactivate(account_id: int):
    """GET asks for confirmation; POST deactivates."""
    return _confirm(account_id, "deactivate")


@bp.route("/team/<int:account_id>/reactivate", methods=["GET", "POST"])
@requires("team")
def team_reactivate(account_id: int):
    """GET asks for confirmation; POST reactivates."""
    return _confirm(account_id, "reactivate")


@bp.route("/team/<int:account_id>/delete", methods=["GET", "POST"])
@requires("team")
def team_delete(account_id: int):
    """GET asks for confirmation; POST deletes."""
    return _confirm(account_id, "delete")


def _selected() -> list:
    values = request.values.getlist("ids")[:500]
    chosen, seen = [], set()
    for value in values:
        if not isinstance(value, str) or not value.isdigit() or value in seen:
            continue
        seen.add(value)
        account = access.manageable_account(organisation(), value)
        if account is None or account.role not in team.TEAM_ROLES:
            abort(404)
        chosen.append(account)
    return chosen


@bp.route("/team/bulk", methods=["GET", "POST"])
@requires("team")
def team_bulk():
    """Deactivate or delete the selected members: GET lists them and asks, POST does it
    for all of them or, when one of them cannot be, for none."""
    action = request.values.get("action", "")
    if action not in team.BULK_ACTIONS:
        flash("Choose Deactivate selected or Delete selected.", "error")
        return redirect_to(url_for("admin.team_list"))
    selected = _selected()
    if not selected:
        flash("Select at least one technician or team user first: tick the boxes in the list.", "error")
        return redirect_to(url_for("admin.team_list"))
    who = _actor()
    form = EmptyForm()
    if request.method == "POST" and form.validate():
        try:
            count = team.bulk(who, action, selected)
        except team.TeamError as exc:
            _fail(exc)
        else:
            verb = "Deactivated" if action == "deactivate" else "Deleted"
            flash(f"{verb} {count} account{'s' if count != 1 else ''}: {', '.join(a.username for a in selected)}.", "success")
        return redirect_to(url_for("admin.team_list"))
    _service, _question, consequences, button, _done = CONFIRMATIONS[action]
    count = len(selected)
    noun = f"{count} account{'s' if count != 1 else ''}"
    return render("admin/team/confirm.html", form=form, title=f"{button} {noun}?", accounts=selected,
                  consequences=consequences, button=f"{button} {noun}", danger=True,
                  problems=team.bulk_problems(action, selected, who), roles=team.ROLE_LABELS,
                  action_url=url_for("admin.team_bulk"), ids=[a.id for a in selected], bulk_action=action)
