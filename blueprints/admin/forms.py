"""Forms of the admin console."""

from flask_wtf import FlaskForm
from wtforms import BooleanField, EmailField, IntegerField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional, Regexp

from services.accounts import EMAIL

# Internal domains (.local, .corp, .test) are normal here, so no DNS-based validation.
EmailAddress = Regexp(EMAIL, message="Enter one email address, like name@example.com.")


class EmptyForm(FlaskForm):
    """Carries only the CSRF token, for POST buttons."""


class MailServerForm(FlaskForm):
    """An SMTP relay. The password is write-only: empty keeps the stored one."""

    name = StringField("Name", validators=[DataRequired("Give the mail server a name."), Length(max=100)])
    host = StringField("Host", validators=[DataRequired("Enter the SMTP server's host name or address."), Length(max=255)],
                       render_kw={"autocapitalize": "none", "spellcheck": "false"})
    port = IntegerField("Port", default=587, validators=[DataRequired("Enter a port between 1 and 65535."), NumberRange(1, 65535, "Enter a port between 1 and 65535.")])
    security = SelectField("Security", choices=[("starttls", "STARTTLS (usually port 587)"), ("ssl", "SSL/TLS (usually port 465)"), ("none", "None (local relays only)")], default="starttls")
    username = StringField("Username", validators=[Optional(), Length(max=255)], render_kw={"autocomplete": "off"})
    password = PasswordField("Password", validators=[Optional(), Length(max=1024)], render_kw={"autocomplete": "new-password"})
    clear_password = BooleanField("Remove the stored password")
    from_address = StringField("From address", validators=[DataRequired("Enter the sender address."), Length(max=320)],
                               render_kw={"placeholder": "Gatehouse <no-reply@example.com>"})
    verify_certificate = BooleanField("Verify the server's certificate", default=True)
    ca_file = StringField("CA certificate file", validators=[Optional(), Length(max=1024)],
                          render_kw={"placeholder": "/etc/ssl/certs/company-ca.pem (optional)"})
    timeout = IntegerField("Timeout (seconds)", default=10, validators=[DataRequired("Enter a timeout between 1 and 120 seconds."), NumberRange(1, 120, "Enter a timeout between 1 and 120 seconds.")])


class TestEmailForm(FlaskForm):
    """Where to send a test email."""

    recipient = EmailField("Send a test email to", validators=[DataRequired("Enter an email address."), EmailAddress, Length(max=320)])
