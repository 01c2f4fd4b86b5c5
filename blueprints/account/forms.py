"""Forms of the two-factor pages."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, Length

CODE_KW = {"autocomplete": "one-time-code", "inputmode": "numeric", "autocapitalize": "none", "spellcheck": "false",
           "pattern": "[0-9 ]*", "size": 8}


class CodeForm(FlaskForm):
    """A six-digit code from the authenticator app."""

    code = StringField("Code from your authenticator app",
                       validators=[DataRequired("Enter the 6-digit code."), Length(max=32, message="That is not a 6-digit code.")],
                       render_kw=CODE_KW)


class RecoveryForm(FlaskForm):
    """One of the recovery codes saved when two-factor authentication was set up."""

    code = StringField("Recovery code",
                       validators=[DataRequired("Enter one of your recovery codes."), Length(max=128, message="That is not a recovery code.")],
                       render_kw={"autocomplete": "off", "autocapitalize": "none", "spellcheck": "false"})


class DownloadForm(FlaskForm):
    """The recovery codes just shown, sent back to be saved as a text file."""

    codes = HiddenField(validators=[DataRequired(), Length(max=1000)])
