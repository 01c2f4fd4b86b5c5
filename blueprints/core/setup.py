"""URL map: ``/setup`` — the one-time page that creates the first owner (and their
organisation) of a fresh installation.

It exists only while no owner exists anywhere; afterwards it answers 404, as if it had
never been there. The form is CSRF protected like every other; the creation is audited
(``setup.completed``) and signs the new owner in. ``flask --app app admin create`` does
the same from the command line.
"""

from __future__ import annotations

from flask import abort, flash, request, url_for
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from services import audit, password_policy, team
from services.accounts import EMAIL

from ..auth.cookies import client_ip, sign_in
from ..rendering import redirect_to, render
from . import bp


class SetupForm(FlaskForm):
    """The organisation and its first owner."""

    organisation_name = StringField("Organisation name", validators=[
        DataRequired("Enter your organisation's name."), Length(max=200, message="At most 200 characters.")],
        render_kw={"autocomplete": "organization", "placeholder": "Acme Corporation"})
    organisation_slug = StringField("Account ID", filters=[lambda v: v.strip().lower() if isinstance(v, str) else v], validators=[
        DataRequired("Choose an Account ID."),
        Regexp(team.SLUG, message="An Account ID is 2 to 64 lower-case letters, digits or hyphens.")],
        render_kw={"autocapitalize": "none", "spellcheck": "false", "placeholder": "acme"})
    username = StringField("Your username", validators=[
        DataRequired("Choose a username."), Length(max=256, message="A username is at most 256 characters."),
        Regexp(r"^[\w.@+-]+$", message="A username is letters, digits or . _ @ + - (no spaces).")],
        render_kw={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"})
    display_name = StringField("Your name", validators=[Optional(), Length(max=200, message="At most 200 characters.")],
                               render_kw={"autocomplete": "name"})
    email = StringField("Your email", validators=[
        DataRequired("Enter your email address."), Length(max=320, message="That is too long for an email address."),
        Regexp(EMAIL, message="Enter one email address, like name@example.com.")],
        render_kw={"type": "email", "autocomplete": "email", "autocapitalize": "none", "spellcheck": "false"})
    new = PasswordField("Password", validators=[DataRequired("Choose a password."), Length(max=1024, message="That is too long.")],
                        render_kw={"autocomplete": "new-password"})
    confirm = PasswordField("Password again", validators=[DataRequired("Type the password again."), Length(max=1024)],
                            render_kw={"autocomplete": "new-password"})


def _rules(password: str = ""):
    return password_policy.check(password, None, password_policy.PasswordPolicy())


@bp.route("/setup", methods=["GET", "POST"])
def setup():
    """Create the first owner; 404 once any owner exists."""
    if not team.setup_open():
        abort(404)
    form = SetupForm()
    if not form.is_submitted():
        return render("core/setup.html", form=form, rules=_rules())
    if not form.validate():
        return render("core/setup.html", form=form, rules=_rules(form.new.data or ""), status=422)
    if form.new.data != form.confirm.data:
        form.confirm.errors = ["The two passwords are not the same."]
        return render("core/setup.html", form=form, rules=_rules(form.new.data), status=422)
    try:
        account = team.create_first_owner(
            organisation_slug=form.organisation_slug.data, organisation_name=form.organisation_name.data,
            username=form.username.data.strip(), email=form.email.data.strip(), password=form.new.data,
            display_name=form.display_name.data or "", ip=client_ip(), user_agent=request.user_agent.string,
        )
    except team.SetupClosed:
        abort(404)
    except team.TeamError as exc:
        target = {"password": "new"}.get(exc.field or "", exc.field or "username")
        getattr(form, target).errors = [str(exc)]
        return render("core/setup.html", form=form, rules=_rules(form.new.data), status=422)
    sign_in(account, "setup")
    audit.record("sign_in.completed", actor=account.username, target=account.username,
                 organisation=account.organisation.slug, ip=client_ip(), user_agent=request.user_agent.string,
                 details={"method": "setup"})
    flash(f"Gatehouse is set up: {account.organisation.name} exists and you are its owner. "
          "Next, add a mail server and invite your technicians.", "success")
    return redirect_to(url_for("admin.home"))


@bp.post("/setup/check")
def setup_check():
    """The live checklist of the setup password (HTMX); 404 once the setup is done."""
    if not team.setup_open():
        abort(404)
    value = request.form.get("new", "")
    password = value[:2048] if isinstance(value, str) else ""
    return render("auth/reset_rules.html", rules=_rules(password), typed=bool(password))
