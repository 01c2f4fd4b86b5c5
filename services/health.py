"""The health report behind ``/healthz``: database, LDAP directories, mail servers, outbox."""

from __future__ import annotations

import time

import peewee

from models import Directory, MailServer, db

from . import directory as directory_service
from . import mailer


def check_database() -> dict:
    """Run ``SELECT 1``."""
    started = time.perf_counter()
    try:
        db.execute_sql("SELECT 1")
    except peewee.PeeweeException as exc:
        return {"ok": False, "error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_mail_server(server) -> dict:
    """Connect, secure and authenticate to one mail server, then disconnect."""
    started = time.perf_counter()
    try:
        smtp = mailer.open_smtp(server)
        smtp.quit()
    except Exception as exc:  # every failure is reported, none may break the health page
        return {"name": server.name, "ok": False, "error": mailer.describe_error(exc)}
    return {"name": server.name, "ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


def report() -> tuple[dict, bool]:
    """The whole health report and whether Gatehouse can serve (the database is up)."""
    database = check_database()
    result = {"database": database, "ldap": [], "smtp": [], "outbox": {}}
    if database["ok"]:
        for directory in Directory.select().order_by(Directory.organisation, Directory.position):
            check = directory_service.check_connection(directory)
            entry = {"name": directory.name, "ok": check.ok, "server": check.server, "ms": round(check.milliseconds, 1)}
            if not check.ok:
                entry["error"] = check.message
            result["ldap"].append(entry)
        for server in MailServer.select().order_by(MailServer.organisation, MailServer.position):
            result["smtp"].append(check_mail_server(server))
        result["outbox"] = mailer.queue_depth()
    healthy = database["ok"] and all(c["ok"] for c in result["ldap"] + result["smtp"])
    result["status"] = "ok" if healthy else ("degraded" if database["ok"] else "down")
    return result, database["ok"]
