"""Command-line interface: migrations, configuration as code, audit verification,
clear one-line errors, and `flask dev` (what `make run` starts) end to end."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from models import AuditEvent, Directory, MailServer, Organisation, db, open_database
from models.migrations import available
from services import audit, mailer
from tests.support.smtp import free_port

ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
[[organisations]]
slug = "acme"
name = "Acme"

  [[organisations.directories]]
  name = "LDAP"
  servers = ["ldap://127.0.0.1:3389"]
  bind_dn = "cn=gatehouse,dc=acme,dc=test"
  bind_password = "env:TEST_BIND_PASSWORD"
  base_dn = "dc=acme,dc=test"

  [[organisations.mail_servers]]
  name = "Relay"
  host = "127.0.0.1"
  port = 2525
  security = "none"
  from_address = "no-reply@acme.test"
"""


def flask(*args, env=None, timeout=60):
    """Run ``flask --app app ARGS`` in a subprocess from the project root."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout,
    )


def test_config_import_and_export(app, runner, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_BIND_PASSWORD", "s3cret")
    path = tmp_path / "gatehouse.toml"
    path.write_text(CONFIG)
    result = runner.invoke(args=["config", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "imported" in result.output
    with app.app_context():
        assert Organisation.get(slug="acme").name == "Acme"
        assert Directory.get(name="LDAP").bind_password_ref == "env:TEST_BIND_PASSWORD"
        assert MailServer.get(name="Relay").port == 2525

    exported = runner.invoke(args=["config", "export"])
    assert exported.exit_code == 0
    assert 'bind_password = "env:TEST_BIND_PASSWORD"' in exported.output
    assert "s3cret" not in exported.output


def test_bad_config_file_is_refused_whole(app, runner, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(CONFIG.replace("port = 2525", 'port = "smtp"'))
    result = runner.invoke(args=["config", "import", str(path)])
    assert result.exit_code == 1
    assert "nothing was imported" in result.output
    assert "organisations[0].mail_servers[0].port" in result.output
    assert "TEST_BIND_PASSWORD" in result.output  # every problem is listed, not only the first
    with app.app_context():
        assert Organisation.select().count() == 0


def test_config_import_of_a_missing_file(runner, tmp_path):
    result = runner.invoke(args=["config", "import", str(tmp_path / "missing.toml")])
    assert result.exit_code == 1
    assert "cannot read" in result.output and "No such file" in result.output


def test_audit_verify_reports_ok_then_the_edited_row(app, runner):
    with app.app_context():
        db.connect(reuse_if_open=True)
        events = [audit.record("test.event", actor=f"a{i}") for i in range(3)]
    ok = runner.invoke(args=["audit", "verify"])
    assert ok.exit_code == 0 and "audit log intact: 3 event(s) verified" in ok.output
    with app.app_context():
        AuditEvent.update(outcome="failure").where(AuditEvent.id == events[1].id).execute()
    broken = runner.invoke(args=["audit", "verify"])
    assert broken.exit_code == 1
    assert f"audit log BROKEN at event {events[1].id}" in broken.output


def test_db_upgrade_and_status(app, runner):
    result = runner.invoke(args=["db", "upgrade"])
    assert result.exit_code == 0 and "database is up to date" in result.output
    status = runner.invoke(args=["db", "status"])
    assert "applied  m0001_initial" in status.output


def test_db_upgrade_on_a_fresh_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = flask("db", "upgrade", env={"GATEHOUSE_ENV": "testing", "GATEHOUSE_SECRET_KEY": "k" * 40, "GATEHOUSE_DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    assert f"applied {len(available())} migration(s): {', '.join(available())}" in result.stdout


def one_line_error(result):
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_production_without_secret_key_stops_with_one_line():
    line = one_line_error(flask("db", "status"))
    assert line.startswith("gatehouse: GATEHOUSE_SECRET_KEY is not set")


def test_unreadable_secret_file_stops_with_one_line(tmp_path):
    line = one_line_error(flask("db", "status", env={"GATEHOUSE_SECRET_KEY_FILE": str(tmp_path / "nope")}))
    assert "GATEHOUSE_SECRET_KEY_FILE" in line and "cannot be read" in line


def test_database_that_cannot_connect_stops_with_one_line():
    env = {"GATEHOUSE_ENV": "testing", "GATEHOUSE_SECRET_KEY": "k" * 40,
           "GATEHOUSE_DATABASE_URL": "postgresql://gatehouse:hunter2@127.0.0.1:1/gatehouse"}
    line = one_line_error(flask("db", "upgrade", env=env))
    assert "cannot connect to the database postgresql://gatehouse:***@127.0.0.1:1/gatehouse" in line
    assert "GATEHOUSE_DATABASE_URL" in line and "hunter2" not in line


def test_bad_database_url_stops_with_one_line():
    env = {"GATEHOUSE_ENV": "testing", "GATEHOUSE_SECRET_KEY": "k" * 40, "GATEHOUSE_DATABASE_URL": "mysql://x/y"}
    line = one_line_error(flask("db", "upgrade", env=env))
    assert "GATEHOUSE_DATABASE_URL" in line and "sqlite:///" in line


def test_dev_refuses_to_run_outside_development():
    env = {"GATEHOUSE_ENV": "testing", "GATEHOUSE_SECRET_KEY": "k" * 40, "GATEHOUSE_DATABASE_URL": "sqlite:////tmp/unused-gatehouse.db"}
    line = one_line_error(flask("dev", env=env))
    assert "runs only in development" in line


def dev_environment(tmp_path):
    return {
        "GATEHOUSE_ENV": "development",
        "GATEHOUSE_INSTANCE_PATH": str(tmp_path / "instance"),
        "GATEHOUSE_PORT": str(free_port()),
        "GATEHOUSE_DEV_LDAP_PORT": str(free_port()),
        "GATEHOUSE_DEV_SMTP_PORT": str(free_port()),
    }


def test_dev_stops_with_one_line_when_a_port_is_taken(tmp_path):
    env = dev_environment(tmp_path)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(env["GATEHOUSE_DEV_LDAP_PORT"])))
        blocker.listen()
        line = one_line_error(flask("dev", env=env))
    assert f"port {env['GATEHOUSE_DEV_LDAP_PORT']} on 127.0.0.1 is already in use" in line
    assert "GATEHOUSE_DEV_LDAP_PORT" in line


def get_json(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def port_open(port):
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_dev_runs_everything_and_ctrl_c_stops_it(tmp_path):
    """What `make run` starts: migrated database, demo organisation, embedded LDAP and
    SMTP capture, the worker delivering into the dev inbox; SIGINT stops it all."""
    env = dev_environment(tmp_path)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    environment.update(env)
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "dev"], cwd=ROOT, env=environment,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{env['GATEHOUSE_PORT']}"
    ports = [int(env[k]) for k in ("GATEHOUSE_PORT", "GATEHOUSE_DEV_LDAP_PORT", "GATEHOUSE_DEV_SMTP_PORT")]
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = get_json(f"{base}/healthz")
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"flask dev did not start:\n{process.stdout.read()}")
                time.sleep(0.2)
        assert health["status"] == "ok", health
        assert [d["name"] for d in health["ldap"]] == ["Acme directory"]
        assert [s["name"] for s in health["smtp"]] == ["Dev mail capture"]

        database = open_database(f"sqlite:///{tmp_path / 'instance' / 'gatehouse.db'}")
        with database.bind_ctx([Organisation, MailServer]):
            organisation = Organisation.get(slug="acme")
        db.initialize(database)
        mailer.queue("zoe@acme.test", "Dev inbox check", f"Open {base}/login", organisation=organisation)
        database.close()

        deadline = time.monotonic() + 15
        while True:
            with urllib.request.urlopen(f"{base}/dev/mail", timeout=5) as response:
                page = response.read().decode()
            if "Dev inbox check" in page:
                break
            assert time.monotonic() < deadline, "the worker did not deliver the message into the dev inbox"
            time.sleep(0.3)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            output, _ = process.communicate()
            pytest.fail(f"flask dev did not stop on SIGINT:\n{output}")
    assert process.returncode == 0, output
    assert "Demo users      olivia" in output
    assert "stopped Gatehouse, the embedded LDAP server, the SMTP capture and the mail worker" in output
    assert not any(port_open(port) for port in ports)


def test_unreachable_redis_stops_with_one_line():
    env = {"GATEHOUSE_ENV": "testing", "GATEHOUSE_SECRET_KEY": "k" * 40, "GATEHOUSE_DATABASE_URL": "sqlite:////tmp/unused-gatehouse.db",
           "GATEHOUSE_REDIS_URL": "redis://:hunter2@127.0.0.1:1/0"}
    line = one_line_error(flask("db", "status", env=env))
    assert line.startswith("gatehouse: GATEHOUSE_REDIS_URL=") and "Connection refused" in line
    assert "hunter2" not in line
