"""Forms of the sign-in pages."""

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length


class IdentifierForm(FlaskForm):
    """Identifier-first sign-in: username or email."""

    identifier = StringField(
        "Username or email",
        validators=[DataRequired("Enter your username or email address."), Length(max=256, message="That is too long for a username or email address.")],
        render_kw={"autocomplete": "username", "autocapitalize": "none", "spellcheck": "false", "autofocus": True},
    )
