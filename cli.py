"""Command-line interface: ``flask --app app <command>``.

db upgrade / db status, config import / config export, audit verify, mail-worker, and
dev (development only: embedded LDAP and SMTP capture, the worker and the web server).
"""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click
import peewee
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext


def masked_url(url: str) -> str:
    """A database URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def connect_database():
    """Connect the bound database or stop with one line saying what to do."""
    from models import db

    try:
        db.connect(reuse_if_open=True)
    except peewee.PeeweeException as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise click.ClickException(
            f"cannot connect to the database {masked_url(current_app.config['DATABASE_URL'])}: {reason} "
            "— check GATEHOUSE_DATABASE_URL and that the server is running"
        ) from None
    return db


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port (so a server can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


db_cli = AppGroup("db", help="Database schema.")
config_cli = AppGroup("config", help="Configuration as code (TOML).")
audit_cli = AppGroup("audit", help="The audit log.")
admin_cli = AppGroup("admin", help="Administrator accounts.")


@admin_cli.command("create")
@click.option("--organisation", "slug", required=True, help="Account ID (slug) of the organisation.")
@click.option("--organisation-name", help="Create the organisation with this name if it does not exist yet.")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(["owner", "technician"]), default="owner", show_default=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Prompted for when not given; use the prompt rather than the command line.")
def admin_create(slug, organisation_name, username, email, role, password):
    """Create an owner (or technician) account with a password."""
    from models import Organisation
    from services.accounts import AccountError, create_local

    connect_database()
    organisation = Organisation.get_or_none(Organisation.slug == slug)
    if organisation is None:
        if not organisation_name:
            raise click.ClickException(
                f"there is no organisation {slug!r}: create it with --organisation-name NAME or `config import`"
            )
        organisation = Organisation.create(slug=slug, name=organisation_name)
    if len(password) < 12:
        raise click.ClickException("an administrator's password must be at least 12 characters long")
    try:
        account = create_local(organisation, username, email, role=role, password=password, actor="cli")
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {account.role} {account.username} in {organisation.slug}")


@db_cli.command("upgrade")
def db_upgrade():
    """Apply pending schema migrations."""
    from models.migrations import upgrade

    database = connect_database()
    applied = upgrade(database.obj)
    click.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}" if applied else "database is up to date")


@db_cli.command("status")
def db_status():
    """List applied and pending migrations."""
    from models.migrations import applied, pending

    database = connect_database()
    for name in applied(database.obj):
        click.echo(f"applied  {name}")
    for name in pending(database.obj):
        click.echo(f"pending  {name}")


@config_cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def config_import(path: Path):
    """Create or update organisations, directories, mail servers, approval profiles and
    policies from a TOML file."""
    from services.configuration import ConfigFileError, import_config

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    connect_database()
    try:
        summary = import_config(text, actor=f"config import {path.name}")
    except ConfigFileError as exc:
        raise click.ClickException(f"{path}: nothing was imported.\n{exc}") from None
    click.echo(f"imported {path}: {summary}")


@config_cli.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of standard output.")
def config_export(output: Path | None):
    """Write the configuration as TOML (secrets only as env: references)."""
    from services.configuration import export_config

    connect_database()
    text = export_config()
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


@audit_cli.command("verify")
def audit_verify():
    """Check the audit log's hash chain; exit 1 naming the first edited or deleted row."""
    from services import audit

    connect_database()
    result = audit.verify()
    if result.ok:
        click.echo(f"audit log intact: {result.checked} event(s) verified")
        return
    click.echo(f"audit log BROKEN at event {result.broken_id}: {result.reason} ({result.checked} event(s) before it verified)", err=True)
    sys.exit(1)


@click.command("mail-worker")
@click.option("--interval", default=1.0, show_default=True, help="Seconds to wait when the outbox is empty.")
@with_appcontext
def mail_worker(interval: float):
    """Deliver the email outbox until stopped (several workers may run at once)."""
    from services.mailer import Worker

    database = connect_database()
    database.close()
    worker = Worker(database.obj, interval=interval)
    click.echo("mail worker running; Ctrl-C stops it")
    try:
        worker.run()
    except KeyboardInterrupt:
        click.echo("mail worker stopped")


@click.command("dev")
@with_appcontext
def dev():
    """Run Gatehouse for development: embedded LDAP and SMTP capture, demo data, worker, web."""
    from devtools import demo
    from devtools.ldap_server import EmbeddedLDAPServer
    from devtools.smtp_capture import SMTPCapture
    from models.migrations import upgrade
    from services.configuration import import_config
    from services.mailer import Worker
    from werkzeug.serving import run_simple

    app: Flask = current_app._get_current_object()
    config = app.config
    if not config["DEVELOPMENT"]:
        raise click.ClickException("`flask dev` runs only in development: set GATEHOUSE_ENV=development (make run does)")
    host = "127.0.0.1"
    for what, port, variable in (
        ("Gatehouse", config["PORT"], "GATEHOUSE_PORT"),
        ("the embedded LDAP server", config["DEV_LDAP_PORT"], "GATEHOUSE_DEV_LDAP_PORT"),
        ("the embedded SMTP capture", config["DEV_SMTP_PORT"], "GATEHOUSE_DEV_SMTP_PORT"),
    ):
        if not port_free(host, port):
            raise click.ClickException(
                f"port {port} on {host} is already in use, so {what} cannot start: stop the program using it or set {variable} to another port"
            )

    _interrupt_on_signals()
    database = connect_database()
    applied = upgrade(database.obj)
    if applied:
        click.echo(f"database migrated: {', '.join(applied)}")
    import_config(demo.demo_config(config["DEV_LDAP_PORT"], config["DEV_SMTP_PORT"], config["SERVER_URL"]),
                  actor="make run")
    demo.ensure_demo_admin()
    database.close()

    maildir = Path(config.get("DEV_MAILDIR") or Path(app.instance_path) / "devmail")
    ldap_server = EmbeddedLDAPServer([demo.DEMO_LDIF], host=host, port=config["DEV_LDAP_PORT"])
    smtp_capture = SMTPCapture(maildir, host=host, port=config["DEV_SMTP_PORT"])
    worker = Worker(database.obj, interval=0.5)
    started = []
    try:
        for server in (ldap_server, smtp_capture):
            server.start()
            started.append(server)
        worker.start()
        started.append(worker)
        base = f"http://{host}:{config['PORT']}"
        users = ", ".join(u["uid"] for u in demo.demo_users())
        click.echo(
            "\n".join(
                [
                    "",
                    f"  Gatehouse       {base}/",
                    f"  Sign in         {base}/login",
                    f"  Dev inbox       {base}/dev/mail",
                    f"  Health          {base}/healthz",
                    f"  Embedded LDAP   {ldap_server.url}  (base {demo.DEMO_BASE_DN})",
                    f"  SMTP capture    {host}:{smtp_capture.port}  → {maildir}",
                    f"  Demo users      {users}",
                    f"                  (organisation '{demo.DEMO_ORGANISATION}', password '{demo.DEMO_PASSWORD}')",
                    f"  Demo admin      {demo.DEMO_ADMIN} / {demo.DEMO_PASSWORD}  → {base}/login/password",
                    "",
                    "  Ctrl-C stops everything.",
                    "",
                ]
            )
        )
        run_simple(host, config["PORT"], app, threaded=True, use_reloader=False, use_debugger=False)
    except OSError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass
    finally:
        for thing in reversed(started):
            thing.stop()
        click.echo("stopped Gatehouse, the embedded LDAP server, the SMTP capture and the mail worker")


def _interrupt_on_signals() -> None:
    """Make Ctrl-C and SIGTERM end ``flask dev`` cleanly, even when started from a
    script that ignores SIGINT (as background jobs of a shell do)."""

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def register_commands(app: Flask) -> None:
    """Attach the commands to ``app.cli``."""
    for command in (db_cli, config_cli, audit_cli, admin_cli, mail_worker, dev):
        app.cli.add_command(command)
