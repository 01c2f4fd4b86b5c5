"""Factory fixtures that create domain objects, returned as callables (Indico style),
and a client signed in as an organisation owner."""

from __future__ import annotations

import pytest

from models import Organisation
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
