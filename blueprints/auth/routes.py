"""URL map: ``/login``. The sign-in methods (email link, password, SSO) attach here."""

from __future__ import annotations

from ..rendering import render
from . import bp
from .forms import IdentifierForm


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Identifier-first sign-in page.

    No sign-in method is enabled on this installation yet, so a valid identifier gets
    that answer (the same for every identifier, known or not)."""
    form = IdentifierForm()
    if form.is_submitted():
        if not form.validate():
            return render("auth/login.html", form=form, status=422)
        return render("auth/login.html", form=form, unavailable=True)
    return render("auth/login.html", form=form)
