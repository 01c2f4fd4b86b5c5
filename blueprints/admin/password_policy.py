"""URL map (under /admin), for owners and technicians (the blueprint's guard):

    GET/POST  /password-policy           password_policy_edit
    POST      /password-policy/preview   password_policy_preview  (how many must change; fragment)
"""

from __future__ import annotations

from flask import flash, request, url_for
from flask_wtf import FlaskForm
from wtforms import IntegerField, RadioField, SelectField
from wtforms.validators import InputRequired, NumberRange, Optional

from services import password_policy

from ..rendering import redirect_to, render
from . import actor, bp, organisation, requires


class SmallIntegerField(IntegerField):
    """An integer field that refuses overlong input before converting it (a 400-digit
    number would otherwise overflow the range check: a 500 instead of a 422)."""

    def process_formdata(self, valuelist):
        if valuelist and isinstance(valuelist[0], str) and len(valuelist[0].strip()) > 9:
            self.data = None
            raise ValueError("Enter a smaller whole number.")
        super().process_formdata(valuelist)


class PasswordPolicyForm(FlaskForm):
    """Strength preset, history, expiry and lock-out of the organisation."""

    strength = SelectField("Password strength", choices=list(password_policy.PRESET_LABELS.items()), default="nist")
    expiry = RadioField("Password expiry", choices=[("never", "Passwords do not expire"), ("days", "Passwords expire every")],
                        default="never")
    expiry_days = SmallIntegerField("Days", validators=[Optional(), NumberRange(1, password_policy.MAX_EXPIRY_DAYS,
                                                                            f"Enter 1 to {password_policy.MAX_EXPIRY_DAYS} days.")])
    history_count = SmallIntegerField("Remembered passwords", default=0, validators=[
        InputRequired("Enter 0 to allow any earlier password."),
        NumberRange(0, password_policy.MAX_HISTORY, f"Enter 0 to {password_policy.MAX_HISTORY}.")])
    lockout_threshold = SmallIntegerField("Failed attempts before lock-out", default=10, validators=[
        InputRequired("Enter how many failed attempts lock an account."), NumberRange(3, 100, "Enter 3 to 100.")])
    lockout_minutes = SmallIntegerField("Lock-out duration (minutes)", default=15, validators=[
        InputRequired("Enter how long an account stays locked."), NumberRange(1, 1440, "Enter 1 to 1440 minutes.")])

    def validate(self, extra_validators=None):
        ok = super().validate(extra_validators)
        if self.expiry.data == "days" and not self.expiry_days.data and not self.expiry_days.errors:
            self.expiry_days.errors = ["Enter after how many days passwords expire."]
            ok = False
        return ok

    def values(self) -> dict:
        return {
            "strength": self.strength.data,
            "expiry_days": self.expiry_days.data if self.expiry.data == "days" else None,
            "history_count": self.history_count.data,
            "lockout_threshold": self.lockout_threshold.data,
            "lockout_minutes": self.lockout_minutes.data,
        }


def _form_for(policy) -> PasswordPolicyForm:
    form = PasswordPolicyForm()
    if not form.is_submitted():
        form.strength.data = policy.strength
        form.expiry.data = "days" if policy.expiry_days else "never"
        form.expiry_days.data = policy.expiry_days
        form.history_count.data = policy.history_count
        form.lockout_threshold.data = policy.lockout_threshold
        form.lockout_minutes.data = policy.lockout_minutes
    return form


def _preview(expiry: str | None, days) -> dict:
    try:
        days = int(days) if expiry == "days" and days not in (None, "") else None
    except (TypeError, ValueError):
        days = None
    if days is not None and not 1 <= days <= password_policy.MAX_EXPIRY_DAYS:
        days = None
    return {**password_policy.preview(organisation(), days), "days": days}


@bp.route("/password-policy", methods=["GET", "POST"])
@requires("password_policy")
def password_policy_edit():
    """The organisation's password rules."""
    policy = password_policy.policy_for(organisation())
    form = _form_for(policy)
    template = "admin/password_policy/edit.html"
    if form.is_submitted():
        if form.validate():
            password_policy.save(organisation(), form.values(), actor=actor())
            flash("Saved the password policy.", "success")
            return redirect_to(url_for("admin.password_policy_edit"))
        return render(template, form=form, preview=_preview(form.expiry.data, form.expiry_days.data), status=422)
    return render(template, form=form, preview=_preview(form.expiry.data, form.expiry_days.data))


@bp.post("/password-policy/preview")
@requires("password_policy")
def password_policy_preview():
    """How many local accounts would have to change their password with this expiry."""
    expiry = request.form.get("expiry")
    days = request.form.get("expiry_days")
    return render("admin/password_policy/edit.html", form=_form_for(password_policy.policy_for(organisation())),
                  preview=_preview(expiry if isinstance(expiry, str) else None, days if isinstance(days, str) else None))
