"""URL map (under /admin), every view @requires("users"):

    GET       /users                               user_list               ?q= &source= &role= &status= &after= (keyset)
    GET       /users/export.csv                    user_export             the list's filters, every page
    GET/POST  /users/new                           user_create             a local user
    GET/POST  /users/import                        user_import             upload → preview; confirm → all or nothing
    GET       /users/directory/<directory_id>      user_directory_detail   ?username= (an entry without an account)
    GET       /users/<id>                          user_detail
    GET/POST  /users/<id>/edit                     user_edit               local users: email, sponsor, display name
    GET/POST  /users/<id>/reset-password           user_reset_password     GET asks, POST emails a reset link
    GET/POST  /users/<id>/reset-2fa                user_reset_two_factor   GET asks, POST clears TOTP and emails
    GET/POST  /users/<id>/deactivate               user_deactivate
    GET/POST  /users/<id>/reactivate               user_reactivate
    GET/POST  /users/<id>/delete                   user_delete

Accounts of the admin's organisation and of the organisations below it; anything else
answers 404. Acting on an account needs a role that could give the account's role (a
team user acts on users only).
"""

from __future__ import annotations

from flask import abort, flash, make_response, request, url_for
from flask_login import current_user
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from werkzeug.exceptions import RequestEntityTooLarge
from wtforms import EmailField, HiddenField, SelectField, StringField
from wtforms.validators import Length, Optional

from models import ROLES, STATUSES, Account
from services import access, accounts, directories, mfa_policy, password_policy, policy, recovery_codes, users
from services import directory as directory_service

from ..auth.cookies import client_ip
from ..rendering import redirect_to, render
from . import acting_for, actor, bp, organisation, requires
from .forms import EmptyForm

_NO_AUTOFILL = {"autocapitalize": "none", "autocomplete": "off", "spellcheck": "false"}
SOURCE_LABELS = {"all": "All sources", "local": "Local accounts", "directory": "Directory users"}
ROLE_LABELS = {"owner": "Owner", "technician": "Technician", "team": "Team user", "user": "User"}
STATUS_LABELS = {"pending": "Invited", "active": "Active", "inactive": "Inactive"}


class UserForm(FlaskForm):
    """A local user. Username, role and organisation are set once, at creation."""

    username = StringField("Username", validators=[Length(max=256)], render_kw=_NO_AUTOFILL)
    email = EmailField("Email", validators=[Length(max=320)], render_kw=_NO_AUTOFILL)
    display_name = StringField("Display name", validators=[Optional(), Length(max=200)])
    sponsor_email = EmailField("Sponsor email", validators=[Optional(), Length(max=320)], render_kw=_NO_AUTOFILL)
    role = SelectField("Role", choices=[], default="user")
    organisation = SelectField("Organisation", choices=[])


class ImportForm(FlaskForm):
    """The CSV file; after the preview the text comes back in ``content`` to be imported."""

    file = FileField("CSV file")
    content = HiddenField()


def _audit_fields() -> dict:
    return {"actor": actor(), "acting_for": acting_for(), "ip": client_ip(), "user_agent": request.user_agent.string}


def _account(account_id: int) -> Account:
    account = access.manageable_account(organisation(), account_id)
    if account is None:
        abort(404)
    return account


def _managed_organisations():
    from models import Organisation

    ids = access.managed_organisation_ids(organisation())
    return list(Organisation.select().where(Organisation.id.in_(ids)).order_by(Organisation.name))


# --------------------------------------------------------------------------
# The list
# --------------------------------------------------------------------------


@bp.get("/users")
@requires("users")
def user_list():
    """Search-as-you-type over accounts and directory entries, 50 to a page."""
    filters = users.Filters.from_args(request.args)
    after = request.args.get("after") or None
    page = users.search(organisation(), filters, after=after)
    managed = access.managed_organisation_ids(organisation())
    return render("admin/users/list.html", filters=filters, page=page, after=after,
                  show_organisation=len(managed) > 1, source_labels=SOURCE_LABELS, role_labels=ROLE_LABELS,
                  status_labels=STATUS_LABELS, roles=ROLES, statuses=STATUSES,
                  next_url=url_for("admin.user_list", after=page.next_after, **filters.as_args())
                  if page.next_after else None)


@bp.get("/users/export.csv")
@requires("users")
def user_export():
    """The accounts matching the list's filters as CSV (every page)."""
    filters = users.Filters.from_args(request.args)
    text = users.export_csv(organisation(), filters, **_audit_fields())
    response = make_response(text)
    response.headers["Content-Type"] = "text/csv; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="users-{organisation().slug}.csv"'
    return response


# --------------------------------------------------------------------------
# Creating, importing, editing
# --------------------------------------------------------------------------


def _form_errors(form: FlaskForm, errors: dict[str, list[str]]) -> None:
    for name, messages in errors.items():
        getattr(form, name).errors = list(messages)


@bp.route("/users/new", methods=["GET", "POST"])
@requires("users")
def user_create():
    """Create a local user (no password: they sign in by email link or get a reset link)."""
    form = UserForm()
    roles = users.grantable_roles(current_user.grant_role)
    form.role.choices = [(role, ROLE_LABELS[role]) for role in roles]
    managed = _managed_organisations()
    form.organisation.choices = [(str(o.id), o.name) for o in managed]
    if not form.organisation.data:
        form.organisation.data = str(organisation().id)
    if form.is_submitted():
        target = next((o for o in managed if str(o.id) == form.organisation.data), None)
        if target is None:
            form.organisation.errors = ["Choose one of the organisations you manage."]
        elif form.validate():
            try:
                account = users.create_user(target, form.data, actor_role=current_user.grant_role, **_audit_fields())
            except users.UserError as exc:
                _form_errors(form, exc.errors)
            else:
                flash(f"Created the user {account.username}. They can sign in with an email link; "
                      "use Reset password to let them set a password.", "success")
                return redirect_to(url_for("admin.user_detail", account_id=account.id))
        return render("admin/users/form.html", form=form, account=None, show_organisation=len(managed) > 1,
                      status=422)
    return render("admin/users/form.html", form=form, account=None, show_organisation=len(managed) > 1)


def _file_text(form: ImportForm) -> str:
    """The uploaded file (or the confirmed content) as text; raises UserError."""
    if form.content.data:
        return form.content.data
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise users.UserError("Choose a CSV file to upload.")
    return users.decode_csv(upload.read(users.MAX_CSV_BYTES + 1))


def _import_context(**extra) -> dict:
    return {"max_bytes": users.MAX_CSV_BYTES, "max_rows": users.MAX_CSV_ROWS, "columns": users.CSV_COLUMNS,
            "preview": None, "error": None, **extra}


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(_exc):
    """A body over MAX_CONTENT_LENGTH is refused before any view runs (the CSRF check
    reads the form); on the import page say why in the page's own words."""
    from ..errors import render_error

    size = (request.content_length or 0) / (1024 * 1024)
    if request.endpoint != "admin.user_import":
        return render_error(413)
    error = (f"The file is {size:.0f} MB; an import file may be at most {users.MAX_CSV_BYTES // 1024} KB "
             f"({users.MAX_CSV_ROWS:,} users). Split it into smaller files.")
    return render("admin/users/import.html", form=ImportForm(formdata=None), status=413, **_import_context(error=error))


@bp.route("/users/import", methods=["GET", "POST"])
@requires("users")
def user_import():
    """Upload a CSV: a preview of what would be created, with each row's problems; the
    confirmation imports every row in one transaction, or none."""
    context = _import_context()
    if request.method == "GET":
        return render("admin/users/import.html", form=ImportForm(), **context)
    form = ImportForm()
    valid = form.validate()
    if not valid:
        return render("admin/users/import.html", form=form, status=400, **context)
    confirming = bool(form.content.data) and request.form.get("confirm") == "1"
    try:
        text = _file_text(form)
        if confirming:
            created = users.import_users(organisation(), text, actor_role=current_user.grant_role, **_audit_fields())
            flash(f"Imported {len(created)} user{'s' if len(created) != 1 else ''}.", "success")
            return redirect_to(url_for("admin.user_list"))
        preview = users.preview_import(organisation(), text, actor_role=current_user.grant_role)
    except users.UserError as exc:
        context["error"] = str(exc)
        return render("admin/users/import.html", form=ImportForm(formdata=None), status=422, **context)
    context["preview"] = preview
    confirm = ImportForm(formdata=None, content=text)
    return render("admin/users/import.html", form=confirm, status=200 if preview.ok else 422, **context)


@bp.route("/users/<int:account_id>/edit", methods=["GET", "POST"])
@requires("users")
def user_edit(account_id: int):
    """Change a local user's email, sponsor email and display name."""
    account = _account(account_id)
    if account.source != "local":
        flash(f"{account.username} comes from a directory: change their details there.", "error")
        return redirect_to(url_for("admin.user_detail", account_id=account.id))
    if not users.may_manage(current_user.grant_role, account):
        abort(403, f"Your role does not let you change the {ROLE_LABELS[account.role].lower()} {account.username}.")
    form = UserForm(obj=account)
    del form.username, form.role, form.organisation
    if form.is_submitted():
        if form.validate():
            try:
                users.update_user(account, form.data, actor_role=current_user.grant_role, **_audit_fields())
            except users.UserError as exc:
                _form_errors(form, exc.errors)
                if not exc.errors:
                    flash(str(exc), "error")
            else:
                flash(f"Saved {account.username}.", "success")
                return redirect_to(url_for("admin.user_detail", account_id=account.id))
        return render("admin/users/form.html", form=form, account=account, status=422)
    return render("admin/users/form.html", form=form, account=account)


# --------------------------------------------------------------------------
# Detail pages
# --------------------------------------------------------------------------


def _directory_view(account: Account):
    """(directory user, directory, error) as the directory describes the account now."""
    if account.source == "local":
        return directory_service.find_local_user(account.organisation, account.username), None, None
    directory = account.directory
    if directory is None:
        return None, None, "the directory this user came from has been removed"
    try:
        return directory_service.find_user(directory, account.username), directory, None
    except directory_service.DirectoryError as exc:
        return None, directory, f"{directory.name}: {exc}"


@bp.get("/users/<int:account_id>")
@requires("users")
def user_detail(account_id: int):
    """Everything about one user and what can be done to them."""
    account = _account(account_id)
    person, directory, directory_error = _directory_view(account)
    manager = directory_service.resolve_manager(directory, person) if person is not None else None
    resolution = policy.decide(account.organisation, account.username)
    rules = {"two_factor_required": mfa_policy.requires_enrolment(account),
             "password_expires_at": password_policy.expires_at(account, password_policy.policy_for(account.organisation))}
    return render("admin/users/detail.html", account=account, person=person, directory=directory, rules=rules,
                  directory_error=directory_error, manager=manager, resolution=resolution,
                  recovery_left=recovery_codes.remaining(account), events=users.recent_events(account, account.organisation.slug),
                  may_manage=users.may_manage(current_user.grant_role, account), is_self=account.id == current_user.account.id,
                  role_labels=ROLE_LABELS, status_labels=STATUS_LABELS, secret_attributes=directories.SECRET_ATTRIBUTES)


@bp.get("/users/directory/<int:directory_id>")
@requires("users")
def user_directory_detail(directory_id: int):
    """A directory entry that has no account yet (they have not signed in)."""
    directory = users.managed_directory(organisation(), directory_id)
    if directory is None:
        abort(404)
    username = request.args.get("username", "")
    if directory_service.valid_identifier(username) is None:
        abort(404)
    error = person = None
    try:
        person = directory_service.find_user(directory, username)
    except directory_service.DirectoryError as exc:
        error = f"{directory.name}: {exc}"
    if person is None and error is None:
        abort(404)
    manager = directory_service.resolve_manager(directory, person) if person is not None else None
    resolution = policy.decide(directory.organisation, username) if person is not None else None
    return render("admin/users/directory_detail.html", directory=directory, username=username, person=person,
                  error=error, manager=manager, resolution=resolution,
                  events=users.recent_events(username, directory.organisation.slug),
                  secret_attributes=directories.SECRET_ATTRIBUTES)


# --------------------------------------------------------------------------
# Actions: each GET asks (works without JavaScript), each POST does
# --------------------------------------------------------------------------

ACTIONS = {
    "reset_password": {
        "title": "Send {name} a password reset link?",
        "explain": "Gatehouse emails {email} a single-use link, valid for one hour, to choose a new password. "
                   "You never see or choose the password. Their current password keeps working until they change it.",
        "button": "Email the reset link", "classes": "button button-primary",
        "done": "Emailed {name} a password reset link.",
    },
    "reset_two_factor": {
        "title": "Reset the two-factor authentication of {name}?",
        "explain": "Their authenticator app and recovery codes stop working, their sessions end, and they must set up "
                   "two-factor authentication again at their next sign-in. They are told by email.",
        "button": "Reset two-factor authentication", "classes": "button button-danger",
        "done": "Reset the two-factor authentication of {name}; they will enrol again at their next sign-in.",
    },
    "deactivate": {
        "title": "Deactivate {name}?",
        "explain": "They cannot sign in until an admin reactivates them. Their sessions end now and their pending "
                   "sign-in requests are cancelled. Nothing is deleted.",
        "button": "Deactivate", "classes": "button button-danger",
        "done": "Deactivated {name}.",
    },
    "reactivate": {
        "title": "Reactivate {name}?",
        "explain": "They can sign in again as before; their failed sign-in count is cleared.",
        "button": "Reactivate", "classes": "button button-primary",
        "done": "Reactivated {name}.",
    },
}


def _perform(name: str, account: Account) -> None:
    fields = _audit_fields()
    if name == "reset_password":
        accounts.send_password_reset(account, **fields)
    elif name == "reset_two_factor":
        accounts.reset_two_factor(account, **fields)
    elif name == "deactivate":
        accounts.deactivate(account, by=current_user.account, **fields)
    elif name == "reactivate":
        accounts.reactivate(account, **fields)


def _action(name: str, account_id: int):
    account = _account(account_id)
    if not users.may_manage(current_user.grant_role, account):
        abort(403, f"Your role does not let you act on the {ROLE_LABELS[account.role].lower()} {account.username}.")
    spec = ACTIONS[name]
    label = account.display_name or account.username
    words = {"name": label if label == account.username else f"{label} ({account.username})",
             "email": account.email or "their address"}
    form = EmptyForm()
    error = None
    if request.method == "POST":
        if form.validate():
            try:
                _perform(name, account)
            except accounts.AccountError as exc:
                error = str(exc)
            else:
                flash(spec["done"].format(**words), "success")
                return redirect_to(url_for("admin.user_detail", account_id=account.id))
        else:
            error = "The form expired. Try again."
    return render("admin/users/confirm.html", form=form, account=account, error=error,
                  title=spec["title"].format(**words), explain=spec["explain"].format(**words),
                  button=spec["button"], classes=spec["classes"], action=request.path,
                  back=url_for("admin.user_detail", account_id=account.id), status=422 if error else 200)


@bp.route("/users/<int:account_id>/reset-password", methods=["GET", "POST"])
@requires("users")
def user_reset_password(account_id: int):
    """Email the user a password reset link (the admin never sees the password)."""
    return _action("reset_password", account_id)


@bp.route("/users/<int:account_id>/reset-2fa", methods=["GET", "POST"])
@requires("users")
def user_reset_two_factor(account_id: int):
    """Clear the user's TOTP and recovery codes; they enrol again at the next sign-in."""
    return _action("reset_two_factor", account_id)


@bp.route("/users/<int:account_id>/deactivate", methods=["GET", "POST"])
@requires("users")
def user_deactivate(account_id: int):
    """Stop the user signing in (sessions end, pending requests are cancelled)."""
    return _action("deactivate", account_id)


@bp.route("/users/<int:account_id>/reactivate", methods=["GET", "POST"])
@requires("users")
def user_reactivate(account_id: int):
    """Let an inactive user sign in again."""
    return _action("reactivate", account_id)


@bp.route("/users/<int:account_id>/delete", methods=["GET", "POST"])
@requires("users")
def user_delete(account_id: int):
    """GET asks for confirmation; POST deletes the account and what belongs to it."""
    account = _account(account_id)
    if not users.may_manage(current_user.grant_role, account):
        abort(403, f"Your role does not let you delete the {ROLE_LABELS[account.role].lower()} {account.username}.")
    form = EmptyForm()
    if request.method == "POST" and form.validate():
        try:
            accounts.delete(account, by=current_user.account, **_audit_fields())
        except accounts.AccountError as exc:
            flash(str(exc), "error")
            return redirect_to(url_for("admin.user_detail", account_id=account.id))
        flash(f"Deleted the user {account.username}.", "success")
        return redirect_to(url_for("admin.user_list"))
    return render("admin/confirm_delete.html", form=form, what="user", name=account.username, used_by=[],
                  action=url_for("admin.user_delete", account_id=account.id),
                  back=url_for("admin.user_detail", account_id=account.id))
