"""Gatehouse application factory: settings, database, extensions, blueprints, CLI.

``flask --app app run`` uses the module-level ``app``; tests call ``create_app(config)``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import peewee
from flask import Flask, request
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx

from config import ConfigError, load_settings

PROJECT_ROOT = Path(__file__).resolve().parent

csrf = CSRFProtect()
htmx = Htmx()

# Overrides from create_app(config) that decide how the environment is read.
_ENV_OVERRIDES = {"ENV_NAME": "GATEHOUSE_ENV", "SECRET_KEY": "GATEHOUSE_SECRET_KEY"}


def create_app(config: dict | None = None) -> Flask:
    """Build a Gatehouse application.

    ``config`` overrides settings read from ``GATEHOUSE_*`` environment variables.
    Raises ConfigError (one line saying what to do) when a setting is missing or wrong.
    """
    config = dict(config or {})
    instance_path = Path(
        config.pop("INSTANCE_PATH", None) or os.environ.get("GATEHOUSE_INSTANCE_PATH") or PROJECT_ROOT / "instance"
    ).resolve()
    environ = dict(os.environ)
    for key, variable in _ENV_OVERRIDES.items():
        if key in config:
            environ[variable] = config[key]
            environ.pop(f"{variable}_FILE", None)
    settings = load_settings(instance_path, environ)
    settings.update(config)

    app = Flask(__name__, instance_path=str(instance_path))
    app.config.update(settings)
    app.config["TESTING"] = settings.get("TESTING", settings["ENV_NAME"] == "testing")
    instance_path.mkdir(parents=True, exist_ok=True)

    _init_database(app)
    _init_extensions(app)
    _register_blueprints(app)

    from blueprints import errors, security

    errors.register(app)
    security.register(app)

    from cli import register_commands

    register_commands(app)
    return app


def _init_database(app: Flask) -> None:
    from models import DatabaseURLError, db, open_database
    from services import crypto

    try:
        database = open_database(app.config["DATABASE_URL"])
    except DatabaseURLError as exc:
        raise ConfigError(f"GATEHOUSE_DATABASE_URL: {exc}") from None
    db.initialize(database)
    app.extensions["gatehouse.database"] = database
    crypto.configure(app.config["SECRET_KEY"])
    _init_rate_limits(app)

    @app.before_request
    def _connect():
        # Static files need no database; the health report checks it itself.
        if request.endpoint not in ("static", "core.healthz"):
            db.connect(reuse_if_open=True)

    @app.teardown_request
    def _close(_exc):
        if not db.is_closed():
            try:
                db.close()
            except peewee.PeeweeException:
                pass


def _init_rate_limits(app: Flask) -> None:
    from services import ratelimit

    try:
        # Keyed with the secret so a Redis reader cannot test emails or IPs against the hashes.
        ratelimit.configure(app.config["REDIS_URL"], secret=app.config["SECRET_KEY"].encode("utf-8"))
    except ratelimit.RateLimitConfigError as exc:
        raise ConfigError(str(exc)) from None


def _init_extensions(app: Flask) -> None:
    from blueprints.auth import cookies

    csrf.init_app(app)
    htmx.init_app(app)
    cookies.init_app(app)
    # Navigation shows only the areas that exist in this build.
    app.jinja_env.globals["view_functions"] = app.view_functions

    @app.context_processor
    def _form_macros():
        # Available in every template and in blocks rendered alone for HTMX, where a
        # template's own top-level {% from ... import %} is not in scope.
        module = app.jinja_env.get_template("_macros.html").module
        return {"field": module.field, "csrf_button": module.csrf_button, "move_buttons": module.move_buttons}


def _register_blueprints(app: Flask) -> None:
    from blueprints.account import bp as account_bp
    from blueprints.admin import bp as admin_bp
    from blueprints.approvals import bp as approvals_bp
    from blueprints.auth import bp as auth_bp
    from blueprints.core import bp as core_bp

    app.register_blueprint(core_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(approvals_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(account_bp)
    if app.config["DEVELOPMENT"]:
        # The dev inbox reads captured mail from disk: it must never exist in production.
        from blueprints.devmail import bp as devmail_bp

        app.register_blueprint(devmail_bp)


def __getattr__(name: str):
    """``app.app`` for ``flask --app app``: built on first use, so importing
    ``create_app`` (tests, tools) reads no environment."""
    if name != "app":
        raise AttributeError(name)
    try:
        application = create_app()
    except ConfigError as exc:
        sys.exit(f"gatehouse: {exc}")
    globals()["app"] = application
    return application
