"""Work that must not delay or shape the answer: run once the response has been sent.

A wrong password for a known user may email their manager (a directory lookup and an
outbox row); for an unknown user nothing happens. Doing that work after the response
keeps both answers equally fast (SECURITY.md 8)."""

from __future__ import annotations

from flask import after_this_request, current_app

from models import db


def after_response(work, *args, **kwargs) -> None:
    """Call ``work(*args, **kwargs)`` after this request's response has been sent, with
    the app context and a database connection; a failure is logged, never raised."""
    app = current_app._get_current_object()

    def run() -> None:
        with app.app_context():
            db.connect(reuse_if_open=True)
            try:
                work(*args, **kwargs)
            except Exception:  # noqa: BLE001 - the answer is gone; the log is the place for it
                app.logger.exception("deferred work %s failed", getattr(work, "__name__", work))
            finally:
                if not db.is_closed():
                    db.close()

    @after_this_request
    def _register(response):
        response.call_on_close(run)
        return response
