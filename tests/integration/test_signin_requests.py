"""Sign-in request states: single use under concurrency, expiry on the server clock,
binding to the browser that asked, reads that change nothing."""

import threading

import pytest

from models import Organisation, SignInRequest, db, utcnow
from services import signin_requests, tokens
from services.accounts import create_local


@pytest.fixture
def account(database):
    return create_local(Organisation.create(slug="acme", name="Acme"), "ann", "ann@acme.test")


def new_request(account, minutes=15):
    return signin_requests.create(account.organisation, account, None, "user", lifetime_minutes=minutes, ip="192.0.2.7", user_agent="Firefox")


def test_secrets_are_long_and_stored_only_as_hashes(account):
    created = new_request(account)
    row = SignInRequest.get_by_id(created.request.id)
    assert len(created.link_token) >= 43 and len(created.binding_secret) >= 43  # 256 bits, base64
    assert row.token_hash == tokens.hash_token(created.link_token) != created.link_token
    assert row.binding_hash == tokens.hash_token(created.binding_secret)
    assert created.link_token not in str(row.__data__.values())


def test_reading_a_request_changes_nothing(account):
    created = new_request(account)
    for _ in range(10):
        assert signin_requests.by_token(created.link_token).id == created.request.id
    assert SignInRequest.get_by_id(created.request.id).status == "pending"


def test_approve_then_complete_once_in_the_binding_browser(account):
    created = new_request(account)
    assert signin_requests.approve(created.link_token, "user")[0] == "approved"
    assert signin_requests.approve(created.link_token, "user")[0] == "used"
    request = SignInRequest.get_by_id(created.request.id)
    assert signin_requests.complete(request, "someone-elses-cookie") is False
    assert signin_requests.complete(request, None) is False
    assert signin_requests.complete(request, created.binding_secret) is True
    assert signin_requests.complete(request, created.binding_secret) is False  # one session only
    assert SignInRequest.get_by_id(created.request.id).status == "completed"


def test_deny_wins_over_a_later_approve(account):
    created = new_request(account)
    assert signin_requests.deny(created.link_token, "user")[0] == "denied"
    assert signin_requests.approve(created.link_token, "user")[0] == "used"
    request = SignInRequest.get_by_id(created.request.id)
    assert signin_requests.complete(request, created.binding_secret) is False


def test_expired_links_are_refused_by_the_server_clock(account):
    created = new_request(account)
    SignInRequest.update(expires_at=utcnow()).where(SignInRequest.id == created.request.id).execute()
    assert signin_requests.approve(created.link_token, "user")[0] == "expired"
    assert signin_requests.status_for(created.request, created.binding_secret) == "expired"


@pytest.mark.parametrize("token", [None, "", "short", "x" * 500, "not a token!", "../../etc/passwd", "a" * 43])
def test_unknown_or_malformed_tokens(account, token):
    assert signin_requests.approve(token, "user") == ("unknown", None)
    assert signin_requests.by_token(token) is None


def test_cancel_and_status_need_the_binding_secret(account):
    created = new_request(account)
    assert signin_requests.status_for(created.request, "wrong") is None
    assert signin_requests.cancel(created.request, "wrong") is False
    assert signin_requests.cancel(created.request, created.binding_secret) is True
    assert signin_requests.status_for(created.request, created.binding_secret) == "cancelled"
    assert signin_requests.approve(created.link_token, "user")[0] == "used"


def test_twenty_concurrent_confirmations_exactly_one_wins(account):
    created = new_request(account)
    results, errors = [], []
    barrier = threading.Barrier(20)

    def confirm():
        try:
            db.connect(reuse_if_open=True)
            barrier.wait()
            results.append(signin_requests.approve(created.link_token, "user")[0])
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=confirm) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(results) == ["approved"] + ["used"] * 19


def test_twenty_concurrent_completions_hand_out_one_session(account):
    created = new_request(account)
    signin_requests.approve(created.link_token, "user")
    request = SignInRequest.get_by_id(created.request.id)
    results = []
    barrier = threading.Barrier(20)

    def finish():
        db.connect(reuse_if_open=True)
        try:
            barrier.wait()
            results.append(signin_requests.complete(request, created.binding_secret))
        finally:
            db.close()

    threads = [threading.Thread(target=finish) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results.count(True) == 1 and results.count(False) == 19


def test_a_link_of_one_kind_cannot_decide_a_request_of_the_other(account):
    created = new_request(account)
    assert signin_requests.approve(created.link_token, "manager") == ("unknown", None)
    assert signin_requests.deny(created.link_token, "manager") == ("unknown", None)
    assert SignInRequest.get_by_id(created.request.id).status == "pending"


def test_an_escalating_request_never_hands_out_a_session_itself(account):
    created = signin_requests.create(account.organisation, account, None, "user", lifetime_minutes=15, escalate=True)
    assert signin_requests.approve(created.link_token, "user")[0] == "approved"
    request = SignInRequest.get_by_id(created.request.id)
    assert signin_requests.complete(request, created.binding_secret) is False
    signin_requests.abandon(request)
    assert SignInRequest.get_by_id(created.request.id).status == "denied"
