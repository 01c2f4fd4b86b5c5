"""Flask app and client fixtures, with CSRF on: the client reads the token from each
page like a browser would and sends it back with forms and HTMX requests."""

from __future__ import annotations

import re

import pytest

from app import create_app

TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-for-gatehouse"
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
CSRF_HEADER = re.compile(r'"X-CSRFToken":\s*"([^"]+)"')


def stored(app, query):
    """``query()`` run inside ``app``'s context with a database connection (to read or
    change what the app stored, between requests)."""
    from models import db

    with app.app_context():
        db.connect(reuse_if_open=True)
        try:
            return query()
        finally:
            db.close()


def make_app(database_url: str, tmp_path, **overrides):
    """A Gatehouse app for tests on ``database_url``."""
    config = {
        "ENV_NAME": "testing",
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SERVER_URL": "http://gatehouse.test",
    }
    config.update(overrides)
    return create_app(config)


class WebClient:
    """A test client that behaves like a browser about CSRF tokens."""

    def __init__(self, client):
        self.client = client
        self.csrf_token: str | None = None

    def _remember_token(self, response):
        if response.mimetype == "text/html":
            text = response.get_data(as_text=True)
            match = CSRF_INPUT.search(text) or CSRF_HEADER.search(text)
            if match:
                self.csrf_token = match.group(1)
        return response

    def get(self, url, htmx: bool = False, target: str | None = None, **kwargs):
        """GET ``url``; with ``htmx`` as htmx would send it (optionally targeting an id)."""
        headers = kwargs.pop("headers", {})
        if htmx:
            headers["HX-Request"] = "true"
            if target:
                headers["HX-Target"] = target
        return self._remember_token(self.client.get(url, headers=headers, **kwargs))

    def head(self, url, **kwargs):
        """HEAD ``url``."""
        return self.client.head(url, **kwargs)

    def post(self, url, data=None, htmx: bool = False, target: str | None = None, csrf: bool = True, **kwargs):
        """POST a form; the CSRF token from the last page is added unless ``csrf=False``."""
        data = dict(data or {})
        headers = kwargs.pop("headers", {})
        if csrf:
            if self.csrf_token is None:
                raise AssertionError("no CSRF token yet: GET the page with the form first, as a browser would")
            if htmx:
                headers["X-CSRFToken"] = self.csrf_token
            else:
                data.setdefault("csrf_token", self.csrf_token)
        if htmx:
            headers["HX-Request"] = "true"
            if target:
                headers["HX-Target"] = target
        return self._remember_token(self.client.post(url, data=data, headers=headers, **kwargs))


@pytest.fixture
def app(database_url, tmp_path):
    """The app on the parametrized database (SQLite, then PostgreSQL)."""
    application = make_app(database_url, tmp_path)
    yield application
    database = application.extensions["gatehouse.database"]
    if hasattr(database, "close_all"):
        database.close_all()


@pytest.fixture
def dev_app(tmp_path):
    """A development-mode app (dev inbox registered) on SQLite."""
    from models import open_database
    from models.migrations import upgrade

    url = f"sqlite:///{tmp_path / 'dev.db'}"
    upgrade(open_database(url))
    return make_app(url, tmp_path, ENV_NAME="development", DEV_MAILDIR=str(tmp_path / "devmail"))


@pytest.fixture
def client(app):
    """A CSRF-aware client for ``app``."""
    return WebClient(app.test_client())


@pytest.fixture
def dev_client(dev_app):
    """A CSRF-aware client for the development app."""
    return WebClient(dev_app.test_client())


@pytest.fixture
def runner(app):
    """The CLI runner for ``app``."""
    return app.test_cli_runner()
