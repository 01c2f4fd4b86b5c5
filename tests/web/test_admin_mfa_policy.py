"""Two-factor enforcement: the service's rules per mode, the admin page (full page,
search partial, saving with an audit event, other organisations' accounts refused) and
sign-in of an affected user, who must enrol before anything else is reachable."""

from __future__ import annotations

import re

import pyotp
import pytest

from models import Account, AuditEvent, MfaPolicy, MfaPolicyAccount, utcnow
from services import mfa_policy, ratelimit
from tests.support.factories import sign_in
from tests.support.web import stored

SECRET = re.compile(r'data-secret="([A-Z2-7]+)"')


@pytest.fixture(autouse=True)
def _memory_ratelimit():
    ratelimit.set_backend(ratelimit.MemoryBackend())


@pytest.fixture
def people(owner, create_account):
    """ann and bob in acme (with olga the owner)."""
    return (create_account(owner.organisation, "ann", display_name="Ann Archer"),
            create_account(owner.organisation, "bob", display_name="Bob Baker", email="robert@example.test"))


# ----------------------------------------------------------------- service rules

@pytest.mark.parametrize("mode, listed, expected", [
    ("off", [], {"ann": False, "bob": False}),
    ("all", [], {"ann": True, "bob": True}),
    ("selected", ["ann"], {"ann": True, "bob": False}),
    ("all_except", ["ann"], {"ann": False, "bob": True}),
])
def test_requires_enrolment_per_mode(app, owner, people, mode, listed, expected):
    def check():
        ids = [Account.get(Account.username == name).id for name in listed]
        mfa_policy.save(owner.organisation, mode, ids, actor="olga")
        return {name: mfa_policy.requires_enrolment(Account.get(Account.username == name)) for name in expected}
    assert stored(app, check) == expected


def test_no_policy_and_totp_on_need_nothing(app, owner, people):
    def check():
        ann = Account.get(Account.username == "ann")
        before = mfa_policy.requires_enrolment(ann)
        mfa_policy.save(owner.organisation, "all", [], actor="olga")
        ann.totp_enabled_at = utcnow()
        return before, mfa_policy.requires_enrolment(ann), mfa_policy.policy_for(owner.organisation).mode
    assert stored(app, check) == (False, False, "all")


def test_save_validates_and_audits(app, owner, people, create_organisation, create_account):
    stranger = create_account(create_organisation("other", "Other"), "eve")

    def check():
        org = owner.organisation
        with pytest.raises(mfa_policy.InvalidPolicy):
            mfa_policy.save(org, "everyone", [], actor="olga")
        with pytest.raises(mfa_policy.InvalidPolicy):
            mfa_policy.save(org, "selected", [stranger.id], actor="olga")
        with pytest.raises(mfa_policy.InvalidPolicy):
            mfa_policy.save(org, "selected", ["x"], actor="olga")
        assert MfaPolicy.select().count() == 0
        mfa_policy.save(org, "selected", [people[0].id, str(people[1].id)], actor="olga")
        mfa_policy.save(org, "all_except", [people[1].id], actor="olga")
        policy = mfa_policy.policy_for(org)
        events = list(AuditEvent.select().where(AuditEvent.action == "mfa_policy.changed").order_by(AuditEvent.id))
        return policy.mode, [a.username for a in mfa_policy.listed_accounts(policy)], len(events), events[-1].details
    mode, listed, count, details = stored(app, check)
    assert (mode, listed, count) == ("all_except", ["bob"], 2)
    assert details["before"]["mode"] == "selected" and details["after"] == {"mode": "all_except", "accounts": [people[1].id]}


def test_search_accounts(app, owner, people, create_organisation, create_account):
    create_account(create_organisation("other", "Other"), "annette")

    def check():
        org = owner.organisation
        names = lambda q, **kw: [a.username for a in mfa_policy.search_accounts(org, q, **kw)]
        return names("AN"), names("robert@"), names("baker"), names(""), names("%"), names("a", limit=1)
    assert stored(app, check) == (["ann"], ["bob"], ["bob"], [], [], ["ann"])


# ----------------------------------------------------------------- admin page

def test_page_and_partials(app, admin_client, people):
    page = admin_client.get("/admin/mfa-policy")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Two-factor enforcement" in html
    assert re.search(r'<input[^>]*checked[^>]*value="off"', html)
    assert 'hx-get="/admin/mfa-policy/search"' in html and 'hx-trigger="input changed delay:200ms, search"' in html
    assert 'aria-current="page"' in html and ">Two-factor enforcement</a>" in html
    partial = admin_client.get("/admin/mfa-policy/search?q=bak", htmx=True, target="mfa-search-results")
    text = partial.get_data(as_text=True)
    assert partial.status_code == 200 and "<html" not in text
    assert "Bob Baker" in text and "Ann Archer" not in text and ">Add</button>" in text
    already = admin_client.get(f"/admin/mfa-policy/search?q=b&accounts={people[1].id}", htmx=True)
    assert "Bob Baker" not in already.get_data(as_text=True)
    picked = admin_client.get(f"/admin/mfa-policy/pick?account={people[1].id}", htmx=True)
    assert picked.status_code == 200 and f'name="accounts" value="{people[1].id}" checked' in picked.get_data(as_text=True)
    # Without JavaScript: the search is a GET of the page, results as checkboxes.
    plain = admin_client.get("/admin/mfa-policy/search?q=bak")
    assert plain.status_code == 302 and plain.headers["Location"].endswith("/admin/mfa-policy?q=bak")
    no_js = admin_client.get("/admin/mfa-policy?q=bak").get_data(as_text=True)
    assert f'<input type="checkbox" name="accounts" value="{people[1].id}">' in no_js


def test_save_from_the_page(app, admin_client, owner, people):
    admin_client.get("/admin/mfa-policy")
    response = admin_client.post("/admin/mfa-policy", {"mode": "selected", "accounts": [str(people[0].id), str(people[1].id)]})
    assert response.status_code == 303 and response.headers["Location"] == "/admin/mfa-policy"
    html = admin_client.get("/admin/mfa-policy").get_data(as_text=True)
    assert "Saved the two-factor enforcement." in html
    assert f'value="{people[0].id}" checked' in html and f'value="{people[1].id}" checked' in html

    def check():
        policy = MfaPolicy.get(MfaPolicy.organisation == owner.organisation)
        return policy.mode, MfaPolicyAccount.select().where(MfaPolicyAccount.policy == policy).count(), \
            AuditEvent.select().where(AuditEvent.action == "mfa_policy.changed").count()
    assert stored(app, check) == ("selected", 2, 1)
    admin_client.post("/admin/mfa-policy", {"mode": "bogus"})
    assert stored(app, check) == ("selected", 2, 1)


def test_other_organisations_accounts_are_refused(app, admin_client, owner, create_organisation, create_account):
    stranger = create_account(create_organisation("other", "Other"), "eve")
    admin_client.get("/admin/mfa-policy")
    response = admin_client.post("/admin/mfa-policy", {"mode": "selected", "accounts": [str(stranger.id)]})
    assert response.status_code == 422 and "not in this organisation" in response.get_data(as_text=True)
    assert stored(app, lambda: MfaPolicy.select().count()) == 0
    assert admin_client.get(f"/admin/mfa-policy/pick?account={stranger.id}", htmx=True).status_code == 404
    assert "No users match" in admin_client.get("/admin/mfa-policy/search?q=eve", htmx=True).get_data(as_text=True)


@pytest.mark.parametrize("role, status", [("technician", 200), ("team", 403), ("user", 403)])
def test_only_owners_and_technicians(client, owner, create_account, role, status):
    create_account(owner.organisation, "pat", role=role)
    sign_in(client, "pat")
    assert client.get("/admin/mfa-policy").status_code == status
    assert client.get("/admin/mfa-policy/search?q=a", htmx=True).status_code == status


# ----------------------------------------------------------------- sign-in under enforcement

def test_affected_user_must_enrol_first(app, client, owner, people):
    stored(app, lambda: mfa_policy.save(owner.organisation, "all_except", [people[1].id], actor="olga"))
    response = sign_in(client, "ann")
    assert response.headers["Location"] == "/account"
    assert stored(app, lambda: Account.get(Account.username == "ann").must_enrol_totp)
    for url in ("/account", "/admin/", "/"):
        assert client.get(url).headers.get("Location") == "/account/2fa", url
    assert client.get("/account/2fa").status_code == 200
    enrol = client.post("/account/2fa/enrol", {})
    secret = SECRET.search(enrol.get_data(as_text=True)).group(1)
    confirm = client.post("/account/2fa/confirm", {"code": pyotp.TOTP(secret).now()})
    assert confirm.status_code == 200
    assert client.get("/account").status_code == 200
    assert not stored(app, lambda: Account.get(Account.username == "ann").must_enrol_totp)


def test_excluded_user_signs_in_normally(app, client, owner, people):
    stored(app, lambda: mfa_policy.save(owner.organisation, "all_except", [people[1].id], actor="olga"))
    sign_in(client, "bob")
    assert client.get("/account").status_code == 200
    assert not stored(app, lambda: Account.get(Account.username == "bob").must_enrol_totp)
