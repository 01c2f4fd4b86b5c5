"""URL map (under /admin):

    GET       /directories                   directory_list
    GET/POST  /directories/new               directory_create
    GET/POST  /directories/<id>/edit         directory_edit
    POST      /directories/<id>/test         directory_test       (result fragment)
    POST      /directories/<id>/lookup       directory_lookup     (result fragment; field identifier)
    POST      /directories/<id>/move         directory_move       (direction=up|down)
    GET/POST  /directories/<id>/delete       directory_delete     (GET asks, POST deletes)
"""

from __future__ import annotations

from flask import abort, flash, request, url_for
from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from models import Directory
from services import directories, ordering

from ..rendering import redirect_to, render
from . import actor, bp, organisation, requires
from .forms import EmptyForm

TLS_LABELS = {"none": "None", "starttls": "StartTLS", "ldaps": "LDAPS"}
_NO_AUTOFILL = {"autocapitalize": "none", "autocomplete": "off", "spellcheck": "false"}


class DirectoryForm(FlaskForm):
    """An LDAP / Active Directory connection. The bind password is write-only: empty
    keeps the stored one. Field rules live in ``services.directories``."""

    name = StringField("Name", validators=[DataRequired("Give the directory a name."), Length(max=100)])
    servers = TextAreaField(
        "Servers", validators=[DataRequired("Enter at least one server URL, like ldap://ldap.example.com:389.")],
        render_kw={**_NO_AUTOFILL, "rows": 3, "wrap": "off", "placeholder": "ldap://dc1.example.com:389\nldap://dc2.example.com:389"})
    tls_mode = SelectField("TLS mode", choices=[
        ("starttls", "StartTLS (ldap://, port 389)"), ("ldaps", "LDAPS (ldaps://, port 636)"),
        ("none", "None (test servers only)")], default="starttls")
    verify_certificate = BooleanField("Verify the server's certificate", default=True)
    ca_file = StringField("CA certificate file", validators=[Optional(), Length(max=1024)],
                          render_kw={**_NO_AUTOFILL, "placeholder": "/etc/ssl/certs/company-ca.pem (optional)"})
    bind_dn = StringField("Bind DN", validators=[Length(max=1024)],
                          render_kw={**_NO_AUTOFILL, "placeholder": "cn=gatehouse,ou=services,dc=example,dc=com"})
    bind_password = PasswordField("Bind password", validators=[Optional(), Length(max=1024)],
                                  render_kw={"autocomplete": "new-password"})
    clear_password = BooleanField("Remove the stored password")
    base_dn = StringField("Base DN", validators=[
        DataRequired("Enter the base DN under which users are searched, like dc=example,dc=com."), Length(max=1024)],
        render_kw={**_NO_AUTOFILL, "placeholder": "dc=example,dc=com"})
    login_attributes = StringField("Login attributes", default="uid", validators=[
        DataRequired("Enter at least one login attribute, like uid or sAMAccountName.")],
        render_kw={**_NO_AUTOFILL, "placeholder": "uid, mail"})
    mail_attribute = StringField("Mail attribute", default="mail", validators=[DataRequired("Enter the mail attribute, usually mail.")],
                                 render_kw=_NO_AUTOFILL)
    manager_attribute = StringField("Manager attribute", default="manager",
                                    validators=[DataRequired("Enter the manager attribute, usually manager.")],
                                    render_kw=_NO_AUTOFILL)
    group_attribute = StringField("Group attribute", default="memberOf",
                                  validators=[DataRequired("Enter the group attribute, usually memberOf.")],
                                  render_kw=_NO_AUTOFILL)
    nested_groups = BooleanField("Include nested groups (Active Directory)")
    connect_timeout = IntegerField("Connect timeout (seconds)", default=5,
                                   validators=[InputRequired("Enter a number of seconds between 1 and 60.")])
    receive_timeout = IntegerField("Answer timeout (seconds)", default=10,
                                   validators=[InputRequired("Enter a number of seconds between 1 and 300.")])


class LookupForm(FlaskForm):
    """Who to look up in a directory."""

    identifier = StringField("Username or email", validators=[
        DataRequired("Enter a username or email to look up."), Length(max=256)], render_kw=_NO_AUTOFILL)


def get_directory(directory_id: int) -> Directory:
    """The directory of the admin's organisation, or 404."""
    directory = Directory.get_or_none((Directory.id == directory_id) & (Directory.organisation == organisation()))
    if directory is None:
        abort(404)
    return directory


def siblings():
    return Directory.select().where(Directory.organisation == organisation())


def _initial(directory: Directory | None) -> dict:
    """Form values for ``directory``: lists shown as lines and comma-separated names."""
    if directory is None:
        return {}
    values = {field: getattr(directory, field) for field in directories.FIELDS}
    values["servers"] = "\n".join(directory.servers or [])
    values["login_attributes"] = ", ".join(directory.login_attributes or [])
    values["ca_file"] = directory.ca_file or ""
    return values


def _values(form: DirectoryForm) -> dict:
    """The service's values from a submitted form: one server URL per line, attribute names
    separated by commas (or spaces)."""
    values = {field: getattr(form, field).data for field in directories.FIELDS}
    values["servers"] = [line.strip() for line in (form.servers.data or "").splitlines() if line.strip()]
    values["login_attributes"] = [name for name in (form.login_attributes.data or "").replace(",", " ").split()]
    for field in ("name", "bind_dn", "base_dn", "ca_file", "mail_attribute", "manager_attribute", "group_attribute"):
        values[field] = (values[field] or "").strip()
    return values


@bp.get("/directories")
@requires("settings")
def directory_list():
    """The organisation's directories in the order they are listed, and the built-in local one."""
    items = list(siblings().order_by(Directory.position, Directory.id))
    return render("admin/directories/list.html", directories=items, usage=directories.usage(organisation()),
                  tls_labels=TLS_LABELS, form=EmptyForm())


def _edit_page(directory: Directory | None, form: DirectoryForm, status: int = 200, **context):
    """The add/edit page; on an existing directory also its test and lookup panels."""
    if directory is not None:
        context.setdefault("test_form", EmptyForm())
        context.setdefault("lookup_form", LookupForm(formdata=None))
    return render("admin/directories/form.html", status=status, form=form, directory=directory,
                  tls_labels=TLS_LABELS, **context)


def _save(directory: Directory | None):
    form = DirectoryForm(data=_initial(directory))
    if not form.is_submitted():
        return _edit_page(directory, form)
    password = form.bind_password.data or None
    if not form.validate():
        # Report every problem at once, not only the ones the form itself checks.
        more = directories.problems(directory, _values(form), password=password,
                                    clear_password=form.clear_password.data)
        for field, messages in more.items():
            if not getattr(form, field).errors:
                getattr(form, field).errors = list(messages)
    else:
        try:
            saved = directories.save(organisation(), directory, _values(form), password=password,
                                     clear_password=form.clear_password.data, actor=actor())
        except directories.DirectorySettingsError as exc:
            for field, messages in exc.errors.items():
                getattr(form, field).errors = list(messages)
        else:
            flash(f"Saved the directory {saved.name}.", "success")
            if directory is None:
                # Straight to the page with Test connection and Look up user.
                return redirect_to(url_for("admin.directory_edit", directory_id=saved.id))
            return redirect_to(url_for("admin.directory_list"))
    return _edit_page(directory, form, status=422, password_dropped=bool(form.bind_password.data))


@bp.route("/directories/new", methods=["GET", "POST"])
@requires("settings")
def directory_create():
    """Add a directory."""
    return _save(None)


@bp.route("/directories/<int:directory_id>/edit", methods=["GET", "POST"])
@requires("settings")
def directory_edit(directory_id: int):
    """Change a directory; the stored bind password is never shown."""
    return _save(get_directory(directory_id))


@bp.post("/directories/<int:directory_id>/test")
@requires("settings")
def directory_test(directory_id: int):
    """Connect and bind with the saved settings; show the result next to the button."""
    directory = get_directory(directory_id)
    form = EmptyForm()
    result = directories.try_connection(directory, actor=actor()) if form.validate() else None
    return _edit_page(directory, DirectoryForm(formdata=None, data=_initial(directory)), test_form=form,
                      test_result=result, status=200 if result else 422)


@bp.post("/directories/<int:directory_id>/lookup")
@requires("settings")
def directory_lookup(directory_id: int):
    """Look a user up as sign-in would: attributes, mail, manager, and what is missing."""
    directory = get_directory(directory_id)
    form = LookupForm()
    report = directories.look_up(directory, form.identifier.data, actor=actor()) if form.validate() else None
    return _edit_page(directory, DirectoryForm(formdata=None, data=_initial(directory)), lookup_form=form,
                      report=report, status=200 if report else 422)


@bp.post("/directories/<int:directory_id>/move")
@requires("settings")
def directory_move(directory_id: int):
    """Move a directory up or down in the list."""
    directory = get_directory(directory_id)
    direction = request.form.get("direction", "")
    if direction not in ("up", "down"):
        abort(400)
    ordering.move(siblings(), directory, direction)
    if request.htmx:
        return directory_list()
    return redirect_to(url_for("admin.directory_list"))


@bp.route("/directories/<int:directory_id>/delete", methods=["GET", "POST"])
@requires("settings")
def directory_delete(directory_id: int):
    """GET asks for confirmation (works without JavaScript); POST deletes."""
    directory = get_directory(directory_id)
    form = EmptyForm()
    used_by = directories.used_by(directory)
    if request.method == "POST" and form.validate():
        try:
            directories.delete(directory, actor=actor())
        except directories.DirectorySettingsError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Deleted the directory {directory.name}.", "success")
        return redirect_to(url_for("admin.directory_list"))
    return render("admin/confirm_delete.html", form=form, what="directory", name=directory.name, used_by=used_by,
                  action=url_for("admin.directory_delete", directory_id=directory.id),
                  back=url_for("admin.directory_list"))
