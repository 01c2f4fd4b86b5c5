"""Error pages a person understands, as full pages or as HTMX flash fragments."""

from __future__ import annotations

import logging

import peewee
from flask import Flask, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from .rendering import wants_partial

log = logging.getLogger(__name__)

EXPLANATIONS = {
    400: ("That request could not be understood", "Something in what was sent is missing or malformed. Go back, check the form and try again."),
    403: ("You don't have permission to do that", "Your account is not allowed to open this page or perform this action. Ask an administrator of your organisation if you think it should be."),
    404: ("Page not found", "There is nothing at this address. It may have moved, or the link may be mistyped."),
    405: ("That action isn't possible here", "This address does not accept that kind of request. Use the buttons on the page instead of typing the address."),
    422: ("Some values need your attention", "The form could not be saved as it is. Correct the highlighted fields and try again."),
    429: ("Too many attempts", "You have tried this too often in a short time. Wait a few minutes, then try again."),
    413: ("That is too large", "What was sent is larger than Gatehouse accepts. Send a smaller file or less text."),
    500: ("Something went wrong on our side", "The error has been logged. Try again in a moment; if it keeps happening, tell your administrator what you were doing."),
    503: ("Gatehouse is temporarily unavailable", "A service Gatehouse needs is not answering. Try again in a moment."),
}
CSRF_EXPLANATION = (
    "This form has expired",
    "The page was open too long or the form came from somewhere else. Reload the page and try again.",
)


def render_error(code: int, title: str | None = None, message: str | None = None):
    """The error response for ``code``: a page, or a flash fragment for HTMX."""
    default_title, default_message = EXPLANATIONS.get(code, EXPLANATIONS[500])
    context = {"code": code, "title": title or default_title, "message": message or default_message}
    if wants_partial():
        body = render_template("errors/_flash.html", **context)
        # Shown in the flash area whatever element triggered the request.
        return body, code, {"HX-Retarget": "#flash-messages", "HX-Reswap": "afterbegin"}
    return render_template("errors/error.html", **context), code


def register(app: Flask) -> None:
    """Install the error handlers on ``app``."""

    @app.errorhandler(CSRFError)
    def _csrf(exc):
        return render_error(400, *CSRF_EXPLANATION)

    @app.errorhandler(HTTPException)
    def _http(exc):
        if exc.code is None or exc.code < 400:
            return exc
        description = None
        # Our own aborts may carry a message meant for the person; werkzeug's defaults are not.
        if exc.description and exc.description != type(exc).description:
            description = exc.description
        return render_error(exc.code, message=description)

    @app.errorhandler(peewee.OperationalError)
    @app.errorhandler(peewee.InterfaceError)
    def _database(exc):
        log.error("database unavailable: %s", exc)
        return render_error(503, message="The database is not answering. Try again in a moment; an administrator has been told in the logs.")

    @app.errorhandler(Exception)
    def _unexpected(exc):
        if isinstance(exc, HTTPException):
            return _http(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        return render_error(500)

    @app.errorhandler(InternalServerError)
    def _internal(exc):
        return render_error(500)
