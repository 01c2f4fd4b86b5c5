"""Factory fixtures that create domain objects, returned as callables (Indico style),
a client signed in as an organisation owner, and the TOTP clock tests move by hand."""

from __future__ import annotations

import time

import pytest

from models import Organisation
from services import ratelimit, totp
from services.accounts import create_local

PASSWORD = "correct horse battery staple"


@pytest.fixture
def create_organisation(app):
    """``create_organisation(slug="acme", name=None, parent=None)``."""

    def make(slug="acme", name=None, parent=None):
        with app.app_context():
            return Organisation.create(slug=slug, name=name or slug.title(), parent=parent)

    return make


@pytest.fixture
def create_account(app):
    """``create_account(organisation, username, role="user", password=PASSWORD, email=None)``."""

    def make(organisation, username="ann", role="user", password=PASSWORD, email=None, **extra):
        with app.app_context():
            return create_local(organisation, username, email or f"{username}@{organisation.slug}.test", role=role,
                                password=password, **extra)

    return make


def sign_in(client, username, password=PASSWORD):
    """Sign ``client`` in through the password form, as a person would."""
    client.get("/login/password")
    response = client.post("/login/password", {"identifier": username, "password": password})
    assert response.status_code == 303, response.get_data(as_text=True)
    return response


@pytest.fixture
def owner(create_organisation, create_account):
    """The owner account of the organisation ``acme``."""
    return create_account(create_organisation("acme", "Acme"), "olga", role="owner")


@pytest.fixture
def admin_client(client, owner):
    """A client signed in as the owner of ``acme``."""
    sign_in(client, "olga")
    return client


class Clock:
    """The clock services.totp reads, at a time-step boundary, moved by the test."""

    def __init__(self):
        self.now = float(int(time.time()) // 30 * 30)

    def time(self):
        return self.now

    def tick(self, steps=1):
        self.now += 30 * steps


@pytest.fixture
def clock(monkeypatch):
    """services.totp on a :class:`Clock`, and fresh in-memory rate limits."""
    ratelimit.set_backend(ratelimit.MemoryBackend())
    fake = Clock()
    monkeypatch.setattr(totp, "time", fake)
    return fake
