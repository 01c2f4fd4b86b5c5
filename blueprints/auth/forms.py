"""Forms of the sign-in pages."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length, Optional

IDENTIFIER_KW = {"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false"}


class IdentifierForm(FlaskForm):
    """Identifier-first sign-in: username or email (and the Account ID when several
    organisations share this installation), then the method."""

    account_id = StringField("Account ID", validators=[Optional(), Length(max=64, message="That is too long for an Account ID.")],
                             render_kw={"autocapitalize": "none", "spellcheck": "false", "autocomplete": "organization"})
    identifier = StringField(
        "Username or email",
        validators=[DataRequired("Enter your username or email address."), Length(max=256, message="That is too long for a username or email address.")],
        render_kw={**IDENTIFIER_KW, "autofocus": True},
    )


class PasswordSignInForm(FlaskForm):
    """Username (or email) and password."""

    account_id = HiddenField(validators=[Optional(), Length(max=64)])
    identifier = StringField(
        "Username or email",
        validators=[DataRequired("Enter your username or email address."), Length(max=256, message="That is too long for a username or email address.")],
        render_kw=IDENTIFIER_KW,
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired("Enter your password."), Length(max=1024, message="That is longer than any password here.")],
        render_kw={"autocomplete": "current-password"},
    )
    next = HiddenField(validators=[Optional(), Length(max=512)])


class EmptyForm(FlaskForm):
    """Carries only the CSRF token, for POST buttons."""
