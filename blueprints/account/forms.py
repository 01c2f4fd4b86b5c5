"""Forms of the two-factor pages."""

from flask_wtf import FlaskForm
from wtforms import HiddenField, StringField
from wtforms.validators import DataRequired, Length, ValidationError

from services import recovery_codes, totp

CODE_KW = {"autocomplete": "one-time-code", "inputmode": "numeric", "autocapitalize": "none", "spellcheck": "false",
           "pattern": "[0-9 ]*", "size": 8}


def _shaped_like(normalise, message: str):
    """A validator: the field must look like a code (checked before it is tried, so a
    typo of the wrong shape never counts towards the lockout)."""

    def check(_form, field):
        if not normalise(field.data):
            raise ValidationError(message)

    return check


class CodeForm(FlaskForm):
    """A six-digit code from the authenticator app."""

    code = StringField("Code from your authenticator app",
                       validators=[DataRequired("Enter the 6-digit code."), Length(max=32, message="That is not a 6-digit code."),
                                   _shaped_like(totp.normalise, "A code is 6 digits, like 123 456.")],
                       render_kw=CODE_KW)


class RecoveryForm(FlaskForm):
    """One of the recovery codes saved when two-factor authentication was set up."""

    code = StringField("Recovery code",
                       validators=[DataRequired("Enter one of your recovery codes."), Length(max=128, message="That is not a recovery code."),
                                   _shaped_like(recovery_codes.normalise, "A recovery code is seven groups of four letters "
                                                                          "and digits, like abcd-efgh-ijkl-mnop-qrst-uvwx-yz23.")],
                       render_kw={"autocomplete": "off", "autocapitalize": "none", "spellcheck": "false"})


class DownloadForm(FlaskForm):
    """The recovery codes just shown, sent back to be saved as a text file."""

    codes = HiddenField(validators=[DataRequired(), Length(max=1000)])
