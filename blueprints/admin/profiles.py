"""URL map (under /admin):

    GET       /profiles                      profile_list
    GET/POST  /profiles/new                  profile_create
    GET/POST  /profiles/<id>/edit            profile_edit
    POST      /profiles/preview              profile_preview       (re-renders the form, its preview or the
                                                                    lifetime note from the posted values; saves nothing)
    POST      /profiles/<id>/default         profile_make_default
    GET/POST  /profiles/<id>/delete          profile_delete        (GET asks, POST deletes)

The ordered mail servers and directories are checkboxes with a position number each, so
the order is explicit and works without JavaScript.
"""

from __future__ import annotations

from flask import abort, current_app, flash, request, url_for
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, StringField, TextAreaField

from models import ApprovalProfile, Directory, MailServer, Policy
from services import profiles

from ..rendering import redirect_to, render
from . import actor, bp, organisation, requires
from .forms import EmptyForm

LOCAL = "local"  # the form value of the built-in local directory
TEMPLATE = "admin/profiles/form.html"


class ProfileForm(FlaskForm):
    """An email approval profile. Checks beyond types live in ``services.profiles``."""

    name = StringField("Profile name", render_kw={"maxlength": 100})
    kind = SelectField("Type", choices=list(profiles.KIND_LABELS.items()), default="user")
    server_url = StringField("Server URL for links", render_kw={
        "type": "url", "autocapitalize": "none", "spellcheck": "false", "placeholder": "https://gatehouse.example.com"})
    subject = StringField("Email subject", render_kw={"maxlength": 200})
    message = TextAreaField("Message", render_kw={"rows": 10})
    # Text, not IntegerField: the service explains a bad number with its reason.
    link_lifetime_minutes = StringField("Link expiration (minutes)", default=str(profiles.DEFAULT_LIFETIME),
                                        render_kw={"inputmode": "numeric"})
    notify_manager_on_failure = BooleanField("Email the user's manager when a sign-in fails")
    first_factor = SelectField("First factor asked of the user", choices=list(profiles.FIRST_FACTOR_LABELS.items()),
                               default="password")
    fallback_approver = StringField("Fallback approver address", render_kw={
        "type": "email", "autocapitalize": "none", "spellcheck": "false", "placeholder": "approvals@example.com"})
    is_default = BooleanField("Make this the default profile (used when no policy matches)")

    def values(self) -> dict:
        """The posted values for ``services.profiles`` (the lifetime as typed)."""
        values = {name: getattr(self, name).data for name in profiles.FIELDS}
        values["is_default"] = self.is_default.data
        return values


def get_profile(profile_id: int) -> ApprovalProfile:
    """The approval profile of the admin's organisation, or 404."""
    profile = ApprovalProfile.get_or_none(
        (ApprovalProfile.id == profile_id) & (ApprovalProfile.organisation == organisation()))
    if profile is None:
        abort(404)
    return profile


@bp.get("/profiles")
@requires("settings")
def profile_list():
    """The organisation's approval profiles, the default first."""
    rows = []
    query = ApprovalProfile.select().where(ApprovalProfile.organisation == organisation()).order_by(
        ApprovalProfile.is_default.desc(), ApprovalProfile.name)
    for profile in query:
        rows.append({
            "profile": profile,
            "mail_servers": [s.name for s in profiles.mail_servers_of(profile)],
            "directories": [d.name if d else "Local accounts" for d in profiles.directories_of(profile)],
            "policies": profiles.policies_using(profile),
        })
    return render("admin/profiles/list.html", rows=rows, form=EmptyForm(), kinds=profiles.KIND_LABELS)


# ---------------------------------------------------------------- the form

def _positions(prefix: str, chosen: list[str], all_keys: list[str]) -> list[str]:
    """The chosen keys sorted by their typed position; blanks and bad numbers keep list order after them."""
    def key(item):
        index, value = item
        raw = request.form.get(f"{prefix}_position_{value}", "").strip()
        try:
            return (0, int(raw), index)
        except ValueError:
            return (1, 0, index)
    ordered = [k for k in all_keys if k in chosen]
    return [value for _, value in sorted(enumerate(ordered), key=key)]


def _choices(profile: ApprovalProfile | None, form_posted: bool):
    """The mail server and directory choices, each a list of dicts with key, label, checked
    and position, the chosen ones first in their order."""
    org = organisation()
    servers = list(MailServer.select().where(MailServer.organisation == org).order_by(MailServer.position, MailServer.id))
    directories = list(Directory.select().where(Directory.organisation == org).order_by(Directory.position, Directory.id))
    server_items = {str(s.id): f"{s.name} ({s.host}:{s.port})" for s in servers}
    directory_items = {LOCAL: "Local accounts (built-in)"}
    directory_items.update({str(d.id): d.name for d in directories})
    if form_posted:
        chosen_servers = _positions("mail_server", request.form.getlist("mail_server"), list(server_items))
        chosen_directories = _positions("directory", request.form.getlist("directory"), list(directory_items))
    elif profile is not None:
        chosen_servers = [str(s.id) for s in profiles.mail_servers_of(profile)]
        chosen_directories = [str(d.id) if d else LOCAL for d in profiles.directories_of(profile)]
    else:
        # A new profile: the organisation's first mail server and its local accounts.
        chosen_servers = [str(servers[0].id)] if servers else []
        chosen_directories = [LOCAL]

    def items(all_items, chosen):
        listed = [{"key": k, "label": all_items[k], "checked": True, "position": i + 1}
                  for i, k in enumerate(chosen) if k in all_items]
        listed += [{"key": k, "label": label, "checked": False, "position": ""}
                   for k, label in all_items.items() if k not in chosen]
        return listed

    return items(server_items, chosen_servers), items(directory_items, chosen_directories)


def _ids(items, local_ok: bool) -> list:
    return [None if item["key"] == LOCAL and local_ok else int(item["key"]) for item in items if item["checked"]]


def _preview(values: dict) -> dict:
    """The preview shown under the form: the rendered email or why it cannot be shown."""
    try:
        subject, body = profiles.preview(values, organisation().name)
    except profiles.ProfileError as exc:
        return {"problems": [m for messages in exc.errors.values() for m in messages]}
    return {"subject": subject, "body": body}


def _lifetime_note(raw, shown_as_error: bool) -> dict | None:
    """What to say next to the lifetime while typing: why it would be refused, or a warning."""
    if shown_as_error or raw in (None, ""):
        return None
    try:
        minutes = profiles.parse_lifetime(raw)
    except profiles.ProfileError as exc:
        return {"kind": "error", "text": f"This will be refused: {exc}."}
    warning = profiles.lifetime_warning(minutes)
    return {"kind": "warning", "text": warning} if warning else None


def _page(form: ProfileForm, profile: ApprovalProfile | None, posted: bool, errors: dict | None = None,
          status: int = 200):
    servers, directories = _choices(profile, posted)
    values = form.values()
    set_live_attributes(form)
    kind = form.kind.data if form.kind.data in profiles.KIND_LABELS else "user"
    return render(
        TEMPLATE, status=status, form=form, profile=profile, mail_servers=servers, directories=directories,
        errors=errors or {}, preview=_preview(values), kind=kind,
        # Under HTMX the type select re-renders the form, so fields of the other type can hide.
        hide_manager_fields=bool(request.htmx) and kind != "manager",
        lifetime_note=_lifetime_note(values["link_lifetime_minutes"], bool(form.link_lifetime_minutes.errors)),
        placeholders=profiles.PLACEHOLDER_HELP, policies=profiles.policies_using(profile) if profile else [],
    )


def set_live_attributes(form: ProfileForm) -> None:
    """HTMX attributes: the type re-renders the form, typing refreshes the preview and the lifetime note."""
    preview_url = url_for("admin.profile_preview")
    form.kind.render_kw = {"hx-post": preview_url, "hx-target": "#profile-form", "hx-swap": "outerHTML",
                           "hx-trigger": "change"}
    for name in ("server_url", "subject", "message"):
        field = getattr(form, name)
        field.render_kw = dict(field.render_kw or {}, **{"class": "profile-live"})
    form.link_lifetime_minutes.render_kw = dict(
        form.link_lifetime_minutes.render_kw or {}, type="number", min=profiles.MIN_LIFETIME, max=profiles.MAX_LIFETIME,
        **{"class": "profile-live", "hx-post": preview_url, "hx-target": "#profile-lifetime-note",
           "hx-swap": "outerHTML", "hx-trigger": "input changed delay:400ms"})


def _save(profile: ApprovalProfile | None):
    form = ProfileForm(obj=profile)
    if not form.is_submitted():
        if profile is None:
            form.subject.data, form.message.data = profiles.default_texts("user")
            form.server_url.data = current_app.config.get("SERVER_URL") or request.host_url.rstrip("/")
        return _page(form, profile, posted=False)
    errors: dict[str, list[str]] = {}
    if form.validate():
        servers, directories = _choices(profile, True)
        try:
            saved = profiles.save(organisation(), profile, form.values(), _ids(servers, False), _ids(directories, True),
                                  actor=actor())
        except profiles.ProfileError as exc:
            errors = exc.errors
        else:
            flash(f"Saved the approval profile {saved.name}.", "success")
            warning = profiles.lifetime_warning(saved.link_lifetime_minutes)
            if warning:
                flash(warning, "warning")
            return redirect_to(url_for("admin.profile_list"))
    else:
        errors = {name: list(messages) for name, messages in form.errors.items()}
    # Errors go next to their fields; values stay as typed.
    for name, messages in errors.items():
        if name in form and name not in ("mail_servers", "directories"):
            form[name].errors = list(messages)
    return _page(form, profile, posted=True, errors=errors, status=422)


@bp.route("/profiles/new", methods=["GET", "POST"])
@requires("settings")
def profile_create():
    """Add an approval profile."""
    return _save(None)


@bp.route("/profiles/<int:profile_id>/edit", methods=["GET", "POST"])
@requires("settings")
def profile_edit(profile_id: int):
    """Change an approval profile; the page shows a preview of its email."""
    return _save(get_profile(profile_id))


@bp.post("/profiles/preview")
@requires("settings")
def profile_preview():
    """Re-render the form from the posted values without saving: the whole form when the
    type changes (suggested texts follow the type), the preview or the lifetime note while
    typing, or the whole page for the Preview button without JavaScript."""
    profile = None
    profile_id = request.form.get("profile_id", "")
    if profile_id.isdigit():
        profile = get_profile(int(profile_id))
    form = ProfileForm(obj=profile)  # CSRFProtect has checked the token; nothing is validated or saved
    kind = form.kind.data if form.kind.data in profiles.KIND_LABELS else "user"
    subject, message = profiles.default_texts(kind)
    if profiles.is_default_text(form.subject.data):
        form.subject.data = subject
    if profiles.is_default_text(form.message.data):
        form.message.data = message
    return _page(form, profile, posted=True)


@bp.post("/profiles/<int:profile_id>/default")
@requires("settings")
def profile_make_default(profile_id: int):
    """Make this profile the one used when no policy matches."""
    profile = get_profile(profile_id)
    if EmptyForm().validate():
        profiles.set_default(profile, actor=actor())
        if not request.htmx:
            flash(f"{profile.name} is now the default approval profile.", "success")
    if request.htmx:
        return profile_list()
    return redirect_to(url_for("admin.profile_list"))


@bp.route("/profiles/<int:profile_id>/delete", methods=["GET", "POST"])
@requires("settings")
def profile_delete(profile_id: int):
    """GET asks for confirmation, or says why it cannot be deleted; POST deletes."""
    profile = get_profile(profile_id)
    form = EmptyForm()
    if request.method == "POST" and form.validate():
        try:
            profiles.delete(profile, actor=actor())
        except profiles.ProfileError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Deleted the approval profile {profile.name}.", "success")
        return redirect_to(url_for("admin.profile_list"))
    return render("admin/profiles/delete.html", form=form, profile=profile, reasons=profiles.delete_blockers(profile),
                  policies=Policy.select().where(Policy.profile == profile).count())
