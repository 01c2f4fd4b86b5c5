"""URL map: ``/`` landing page, ``/healthz`` JSON health report."""

from __future__ import annotations

from flask import current_app, jsonify

from services import health

from ..rendering import render
from . import bp


@bp.get("/")
def home():
    """The landing page: what this is and where to go next."""
    demo = None
    if current_app.config["DEVELOPMENT"]:
        from devtools.demo import demo_summary

        demo = demo_summary(current_app.config)
    return render("core/home.html", demo=demo)


@bp.get("/healthz")
def healthz():
    """Database, LDAP and SMTP reachability as JSON; 503 when the database is down."""
    result, serving = health.report()
    response = jsonify(result)
    response.status_code = 200 if serving else 503
    response.headers["Cache-Control"] = "no-store"
    return response
