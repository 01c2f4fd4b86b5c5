"""Wrong TOTP codes count towards the account lockout (SECURITY.md 10), and a safe
``next`` survives the second-factor step."""

from __future__ import annotations

import pytest

from models import Account, Organisation, PasswordPolicy
from tests.support.web import stored
from tests.web import test_two_factor
from tests.web.test_two_factor import code_now, password_first

# The fixture of the two-factor tests, used here too.
ann_with_totp = test_two_factor.ann_with_totp
pytestmark = pytest.mark.usefixtures("clock")  # services.totp on a clock the tests move

THRESHOLD = 3


def wrong(secret, clock):
    return "000000" if code_now(secret, clock) != "000000" else "111111"


def set_threshold(app, threshold=THRESHOLD):
    stored(app, lambda: PasswordPolicy.create(organisation=Organisation.get(Organisation.slug == "acme"),
                                              lockout_threshold=threshold, lockout_minutes=15))


def test_wrong_codes_lock_the_account_and_a_right_code_is_then_refused(app, client, ann_with_totp, clock):
    secret, _ = ann_with_totp
    set_threshold(app)
    password_first(client)  # the password attempt stays counted until the code completes the sign-in
    client.get("/login/totp")
    for _ in range(THRESHOLD - 1):
        response = client.post("/login/totp", {"code": wrong(secret, clock)})
        assert response.status_code == 422 and "not right" in response.get_data(as_text=True)
    account = stored(app, lambda: Account.get(Account.username == "ann"))
    assert account.failed_attempts == THRESHOLD and account.locked_until is not None
    response = client.post("/login/totp", {"code": code_now(secret, clock)})
    assert response.status_code == 429 and "this account is locked" in response.get_data(as_text=True)
    assert client.get("/account").status_code == 302  # not signed in
    # The password step is refused as locked, too.
    client.get("/login/password")
    response = client.post("/login/password", {"identifier": "ann", "password": "correct horse battery staple"})
    assert response.status_code == 429 and "this account is locked" in response.get_data(as_text=True)


def test_a_right_code_resets_the_count(app, client, ann_with_totp, clock):
    secret, _ = ann_with_totp
    set_threshold(app)
    password_first(client)
    client.get("/login/totp")
    for _ in range(THRESHOLD - 2):
        assert client.post("/login/totp", {"code": wrong(secret, clock)}).status_code == 422
    assert stored(app, lambda: Account.get(Account.username == "ann").failed_attempts) == THRESHOLD - 1
    response = client.post("/login/totp", {"code": code_now(secret, clock)})
    assert response.status_code == 303 and response.headers["Location"] == "/account"
    account = stored(app, lambda: Account.get(Account.username == "ann"))
    assert account.failed_attempts == 0 and account.locked_until is None


def test_next_is_kept_across_the_totp_step(app, client, ann_with_totp, clock):
    secret, _ = ann_with_totp
    client.get("/login/password?next=/account/2fa")
    response = client.post("/login/password", {"identifier": "ann", "password": "correct horse battery staple",
                                                "next": "/account/2fa"})
    assert response.status_code == 303 and response.headers["Location"] == "/login/totp?next=/account/2fa"
    client.get(response.headers["Location"])
    response = client.post("/login/totp", {"code": code_now(secret, clock)})
    assert response.status_code == 303 and response.headers["Location"] == "/account/2fa"


def test_an_unsafe_next_is_dropped_at_the_totp_step(app, client, ann_with_totp, clock):
    secret, _ = ann_with_totp
    password_first(client)
    client.get("/login/totp?next=//evil.example/steal")
    response = client.post("/login/totp", {"code": code_now(secret, clock)})
    assert response.status_code == 303 and response.headers["Location"] == "/account"


def test_a_right_password_between_wrong_codes_does_not_clear_the_count(app, client, ann_with_totp, clock):
    """Alternating the right password with wrong codes cannot escape the lockout."""
    secret, _ = ann_with_totp
    set_threshold(app, 5)
    for _ in range(2):
        password_first(client)
        client.get("/login/totp")
        assert client.post("/login/totp", {"code": wrong(secret, clock)}).status_code == 422
    assert stored(app, lambda: Account.get(Account.username == "ann").failed_attempts) == 4
    password_first(client)  # the fifth attempt reaches the threshold
    assert stored(app, lambda: Account.get(Account.username == "ann").locked_until) is not None
