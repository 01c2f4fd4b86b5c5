"""URL map: ``/dev/mail`` list, ``/dev/mail/<id>`` one message, ``/dev/mail/<id>/html``
its HTML part in a sandbox, ``/dev/mail/clear`` (GET asks, POST deletes)."""

from __future__ import annotations

import re
from pathlib import Path

from flask import abort, current_app, flash, make_response, request, url_for
from markupsafe import Markup, escape

from devtools import smtp_capture

from ..rendering import redirect_to, render
from . import bp

URL_PATTERN = re.compile(r"https?://[^\s<>\"')\]]+")


def maildir() -> Path:
    """Where the embedded SMTP server writes captured messages."""
    return Path(current_app.config.get("DEV_MAILDIR") or Path(current_app.instance_path) / "devmail")


@bp.app_template_filter("linkify")
def linkify(text: str) -> Markup:
    """Escape ``text`` and turn every http(s) URL in it into a link."""
    escaped = str(escape(text))
    return Markup(URL_PATTERN.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped))


@bp.get("")
def mail_list():
    """Captured messages, newest first; the list refreshes itself with HTMX."""
    messages = smtp_capture.list_messages(maildir())
    return render("devmail/list.html", messages=messages)


@bp.get("/<message_id>")
def mail_show(message_id: str):
    """One captured message with its links clickable."""
    message = smtp_capture.read_message(maildir(), message_id)
    if message is None:
        abort(404, "That message is not in the dev inbox any more (the inbox may have been cleared).")
    return render("devmail/show.html", message=message)


@bp.get("/<message_id>/html")
def mail_html(message_id: str):
    """The HTML part on its own, for a sandboxed iframe: no scripts, no forms, no requests."""
    message = smtp_capture.read_message(maildir(), message_id)
    if message is None or not message.html:
        abort(404)
    response = make_response(message.html)
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation"
    )
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.route("/clear", methods=["GET", "POST"])
def mail_clear():
    """GET asks for confirmation (no JavaScript needed); POST deletes every message."""
    if request.method == "GET":
        return render("devmail/clear.html", count=len(smtp_capture.list_messages(maildir(), limit=10_000)))
    removed = smtp_capture.clear_messages(maildir())
    flash(f"Deleted {removed} captured message{'s' if removed != 1 else ''}.", "success")
    return redirect_to(url_for("devmail.mail_list"))
