"""The README's production recipe, run as written: PostgreSQL and Redis, `flask db
upgrade`, `flask admin create`, and gunicorn serving `app:create_app()`; then an owner
signs in over HTTP and gunicorn stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
from http.client import HTTPConnection
from pathlib import Path

import pytest

from tests.support.database import throwaway_postgres
from tests.support.smtp import free_port

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("GATEHOUSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
PASSWORD = "a long owner passphrase"


@pytest.fixture
def production_database():
    """A new, empty PostgreSQL database (the recipe migrates it); dropped afterwards."""
    with throwaway_postgres("production", "production recipe skipped") as url:
        yield url


@pytest.fixture
def environment(production_database, tmp_path):
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis not reachable at {REDIS_URL} ({exc}): production recipe skipped")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEHOUSE_")}
    env.update({
        "GATEHOUSE_SECRET_KEY": secrets.token_urlsafe(48),  # GATEHOUSE_ENV unset: production
        "GATEHOUSE_DATABASE_URL": production_database,
        "GATEHOUSE_REDIS_URL": REDIS_URL,
        "GATEHOUSE_SERVER_URL": "https://gatehouse.acme.test",
        "GATEHOUSE_INSTANCE_PATH": str(tmp_path / "instance"),
    })
    return env


def flask(env, *args):
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def request(port, method, path, body=None, cookies=""):
    connection = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Cookie": cookies} if cookies else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response, response.read().decode()
    finally:
        connection.close()


def cookies_of(response) -> dict[str, str]:
    """name -> the whole Set-Cookie header of each cookie the response sets."""
    return {value.split("=", 1)[0]: value for key, value in response.getheaders() if key.lower() == "set-cookie"}


def test_the_readme_production_recipe_serves_gatehouse_under_gunicorn(environment):
    gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
    assert gunicorn, "gunicorn is a dev dependency: `make install` puts it in .venv"
    assert "applied" in flask(environment, "db", "upgrade")
    assert "created owner olga in acme" in flask(
        environment, "admin", "create", "--organisation", "acme", "--organisation-name", "Acme",
        "--username", "olga", "--email", "olga@acme.test", "--password", PASSWORD)

    port = free_port()
    server = subprocess.Popen([gunicorn, "--threads", "8", "--bind", f"127.0.0.1:{port}", "app:create_app()"],
                              cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response, body = request(port, "GET", "/healthz")
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not start:\n{server.stdout.read() if server.poll() is not None else ''}")
                time.sleep(0.2)
        assert response.status == 200 and '"database"' in body

        response, page = request(port, "GET", "/login/password")
        assert response.status == 200
        assert response.getheader("Strict-Transport-Security", "").startswith("max-age=")
        form_cookie = cookies_of(response)["session"]
        assert "Secure" in form_cookie and "HttpOnly" in form_cookie
        body = urllib.parse.urlencode({"csrf_token": CSRF_INPUT.search(page).group(1), "identifier": "olga",
                                       "password": PASSWORD, "account_id": "acme"})
        response, _ = request(port, "POST", "/login/password", body, cookies=form_cookie.split(";", 1)[0])
        assert response.status == 303, response.status
        session_cookie = cookies_of(response)["gatehouse_session"]
        assert "Secure" in session_cookie and "HttpOnly" in session_cookie
        response, page = request(port, "GET", "/admin/", cookies=session_cookie.split(";", 1)[0])
        assert response.status == 200 and "Dashboard" in page
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
            pytest.fail(f"gunicorn did not stop on SIGTERM:\n{output}")
    assert server.returncode == 0, output
