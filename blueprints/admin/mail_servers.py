"""URL map (under /admin):

    GET       /mail-servers                  mail_server_list
    GET/POST  /mail-servers/new              mail_server_create
    GET/POST  /mail-servers/<id>/edit        mail_server_edit
    POST      /mail-servers/<id>/test        mail_server_test     (result fragment)
    POST      /mail-servers/<id>/move        mail_server_move     (direction=up|down)
    GET/POST  /mail-servers/<id>/delete      mail_server_delete   (GET asks, POST deletes)
"""

from __future__ import annotations

from flask import abort, flash, request, url_for

from models import MailServer
from services import mail_servers, ordering

from ..rendering import redirect_to, render
from . import actor, bp, organisation, requires
from .forms import EmptyForm, MailServerForm, TestEmailForm


def get_server(server_id: int) -> MailServer:
    """The mail server of the admin's organisation, or 404."""
    server = MailServer.get_or_none((MailServer.id == server_id) & (MailServer.organisation == organisation()))
    if server is None:
        abort(404)
    return server


def siblings():
    return MailServer.select().where(MailServer.organisation == organisation())


@bp.get("/mail-servers")
@requires("settings")
def mail_server_list():
    """The organisation's mail servers in the order they are tried."""
    servers = list(siblings().order_by(MailServer.position, MailServer.id))
    return render("admin/mail_servers/list.html", servers=servers, form=EmptyForm())


def _save(server: MailServer | None):
    form = MailServerForm(obj=server)
    template = "admin/mail_servers/form.html"
    if form.is_submitted():
        if form.validate():
            values = {field: getattr(form, field).data for field in mail_servers.FIELDS}
            try:
                saved = mail_servers.save(
                    organisation(), server, values, password=form.password.data or None,
                    clear_password=form.clear_password.data, actor=actor(),
                )
            except mail_servers.MailServerError as exc:
                getattr(form, exc.field or "name").errors = [str(exc)]
            else:
                flash(f"Saved the mail server {saved.name}.", "success")
                return redirect_to(url_for("admin.mail_server_list"))
        return render(template, form=form, server=server, status=422)
    return render(template, form=form, server=server, test_form=TestEmailForm() if server else None)


@bp.route("/mail-servers/new", methods=["GET", "POST"])
@requires("settings")
def mail_server_create():
    """Add a mail server."""
    return _save(None)


@bp.route("/mail-servers/<int:server_id>/edit", methods=["GET", "POST"])
@requires("settings")
def mail_server_edit(server_id: int):
    """Change a mail server; the stored password is never shown."""
    return _save(get_server(server_id))


@bp.post("/mail-servers/<int:server_id>/test")
@requires("settings")
def mail_server_test(server_id: int):
    """Send a test email now and show the result next to the button."""
    server = get_server(server_id)
    form = TestEmailForm()
    result = None
    if form.validate():
        result = mail_servers.send_test(server, form.recipient.data, actor=actor())
    return render("admin/mail_servers/form.html", server=server, form=MailServerForm(obj=server, formdata=None),
                  test_form=form, test_result=result, status=200 if form.errors == {} else 422)


@bp.post("/mail-servers/<int:server_id>/move")
@requires("settings")
def mail_server_move(server_id: int):
    """Move a mail server up or down in the failover order."""
    server = get_server(server_id)
    direction = request.form.get("direction", "")
    if direction not in ("up", "down"):
        abort(400)
    ordering.move(siblings(), server, direction)
    if request.htmx:
        return mail_server_list()
    return redirect_to(url_for("admin.mail_server_list"))


@bp.route("/mail-servers/<int:server_id>/delete", methods=["GET", "POST"])
@requires("settings")
def mail_server_delete(server_id: int):
    """GET asks for confirmation (works without JavaScript); POST deletes."""
    server = get_server(server_id)
    form = EmptyForm()
    used_by = mail_servers.profiles_using(server)
    if request.method == "POST" and form.validate():
        try:
            mail_servers.delete(server, actor=actor())
        except mail_servers.MailServerError as exc:
            flash(str(exc), "error")
        else:
            flash(f"Deleted the mail server {server.name}.", "success")
        return redirect_to(url_for("admin.mail_server_list"))
    return render("admin/confirm_delete.html", form=form, what="mail server", name=server.name, used_by=used_by,
                  action=url_for("admin.mail_server_delete", server_id=server.id), back=url_for("admin.mail_server_list"))
