"""The authorisation matrix (SECURITY.md 22): every admin route × every role × a target
inside and outside the actor's organisation → allowed, 403 or 404.

``ROUTES`` names, for every admin endpoint, what it needs; the expected outcome per
role is written here, independently of services/access.py. A new admin route without an
entry fails ``test_every_admin_route_is_in_the_matrix``.

Organisations: ``holding`` ⊃ ``acme`` ⊃ ``acme-eu``, and ``globex`` beside them. The
actors belong to ``acme``. A target in ``acme`` is inside; in ``acme-eu`` it is inside
for people and the admin team (an admin of a parent manages its children's users and
technicians) but outside for settings (each organisation's own); in ``holding`` (the
parent) and ``globex`` it is outside: 404, as if it did not exist.
"""

from __future__ import annotations

import itertools

import pytest

from models import Account, ApprovalProfile, Directory, MailServer, Organisation, Policy
from blueprints.errors import CSRF_EXPLANATION
from services import sessions
from tests.support.web import WebClient

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# What each role may do, written out here rather than read from services/access.py.
ALLOWED = {
    "dashboard": {"owner", "technician", "team", "team+password_policy", "elevated"},
    "users": {"owner", "technician", "team", "team+password_policy", "elevated"},
    "team": {"owner", "technician", "elevated"},
    "settings": {"owner", "technician", "elevated"},
    "password_policy": {"owner", "technician", "team+password_policy", "elevated"},
    "audit": {"owner", "technician", "elevated"},
}
ROLES = ("owner", "technician", "team", "team+password_policy", "elevated", "user")

# endpoint -> (capability, the kind of object its URL names or None[, the query parameter
# that names it when it is not part of the path[, other query parameters]])
ROUTES = {
    "admin.home": ("dashboard", None),
    "admin.dashboard_health": ("settings", None),
    "admin.audit_list": ("audit", None),
    "admin.audit_export": ("audit", None),
    "admin.audit_verify": ("audit", None),
    "admin.directory_list": ("settings", None),
    "admin.directory_create": ("settings", None),
    "admin.directory_edit": ("settings", "directory"),
    "admin.directory_delete": ("settings", "directory"),
    "admin.directory_lookup": ("settings", "directory"),
    "admin.directory_move": ("settings", "directory"),
    "admin.directory_test": ("settings", "directory"),
    "admin.mail_server_list": ("settings", None),
    "admin.mail_server_create": ("settings", None),
    "admin.mail_server_edit": ("settings", "mail_server"),
    "admin.mail_server_delete": ("settings", "mail_server"),
    "admin.mail_server_move": ("settings", "mail_server"),
    "admin.mail_server_test": ("settings", "mail_server"),
    "admin.profile_list": ("settings", None),
    "admin.profile_create": ("settings", None),
    "admin.profile_edit": ("settings", "profile"),
    "admin.profile_delete": ("settings", "profile"),
    "admin.profile_make_default": ("settings", "profile"),
    "admin.profile_preview": ("settings", None),
    "admin.policy_list": ("settings", None),
    "admin.policy_create": ("settings", None),
    "admin.policy_edit": ("settings", "policy"),
    "admin.policy_delete": ("settings", "policy"),
    "admin.policy_move": ("settings", "policy"),
    "admin.policy_row": ("settings", "policy"),
    "admin.policy_toggle": ("settings", "policy"),
    "admin.policy_reorder": ("settings", None),
    "admin.policy_tester": ("settings", None),
    "admin.policy_validate": ("settings", None),
    "admin.policy_values": ("settings", None),
    "admin.password_policy_edit": ("password_policy", None),
    "admin.password_policy_preview": ("password_policy", None),
    "admin.mfa_policy_edit": ("settings", None),
    "admin.mfa_policy_pick": ("settings", "account_in_setting", "account"),  # ?account=<id>
    "admin.mfa_policy_search": ("settings", None),
    "admin.user_list": ("users", None),
    "admin.user_export": ("users", None),
    "admin.user_create": ("users", None),
    "admin.user_import": ("users", None),
    "admin.user_detail": ("users", "user"),
    "admin.user_edit": ("users", "user"),
    "admin.user_reset_password": ("users", "user"),
    "admin.user_reset_two_factor": ("users", "user"),
    "admin.user_deactivate": ("users", "user"),
    "admin.user_reactivate": ("users", "user"),
    "admin.user_delete": ("users", "user"),
    # A directory entry without an account: directories of child organisations count too.
    "admin.user_directory_detail": ("users", "people_directory", None, {"username": "ann"}),
    "admin.team_list": ("team", None),
    "admin.team_bulk": ("team", None),
    "admin.team_create": ("team", None),
    "admin.team_edit": ("team", "team_member"),
    "admin.team_deactivate": ("team", "team_member"),
    "admin.team_reactivate": ("team", "team_member"),
    "admin.team_delete": ("team", "team_member"),
    "admin.team_resend": ("team", "team_member"),
    "admin.team_reset_password": ("team", "team_member"),
    "admin.team_reset_two_factor": ("team", "team_member"),
}
# Objects that an admin of a parent organisation manages in its children too.
PEOPLE = {"team_member", "user", "people_directory"}


def admin_rules(app):
    return [rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith("admin.")]


def test_every_admin_route_is_in_the_matrix(app):
    endpoints = {rule.endpoint for rule in admin_rules(app)}
    assert endpoints - set(ROUTES) == set(), "add these admin routes to ROUTES in this file"
    assert set(ROUTES) - endpoints == set(), "these ROUTES entries name no route any more"
    for endpoint, (capability, kind, *rest) in ROUTES.items():
        assert capability in ALLOWED, endpoint
        [rule] = [r for r in admin_rules(app) if r.endpoint == endpoint]
        in_path = kind is not None and not (rest and rest[0])
        assert bool(rule.arguments) == in_path, f"{endpoint}: its URL arguments and the matrix disagree"


def make_objects(organisation: Organisation, tag: str) -> dict[str, int]:
    """One object of each kind in ``organisation``; their ids by kind."""
    directory = Directory.create(organisation=organisation, name=f"ldap {tag}", base_dn="dc=acme,dc=test",
                                 servers=["ldap://127.0.0.1:9"], connect_timeout=1, receive_timeout=1)
    server = MailServer.create(organisation=organisation, name=f"relay {tag}", host="127.0.0.1", port=9,
                               from_address="g@acme.test", timeout=1)
    profile = ApprovalProfile.create(organisation=organisation, name=f"profile {tag}", server_url="http://g.test",
                                     subject="s", message="{link}")
    policy = Policy.create(organisation=organisation, position=99, profile=profile, attribute="department",
                           values=["x"])
    member = Account.create(organisation=organisation, username=f"team-{tag}", email=f"team-{tag}@acme.test",
                            role="team", status="pending")
    user = Account.create(organisation=organisation, username=f"user-{tag}", email=f"user-{tag}@acme.test")
    return {"directory": directory.id, "mail_server": server.id, "profile": profile.id, "policy": policy.id,
            "team_member": member.id, "user": user.id, "account_in_setting": user.id, "people_directory": directory.id}


@pytest.fixture
def world(app):
    with app.app_context():
        holding = Organisation.create(slug="holding", name="Holding")
        acme = Organisation.create(slug="acme", name="Acme", parent=holding)
        child = Organisation.create(slug="acme-eu", name="Acme EU", parent=acme)
        globex = Organisation.create(slug="globex", name="Globex")
        actors = {}
        for role in ROLES:
            account_role = {"team+password_policy": "team", "elevated": "team"}.get(role, role)
            actors[role] = Account.create(
                organisation=acme, username=role.replace("+", "-"), email=f"{role.replace('+', '-')}@acme.test",
                role=account_role, permissions=["password_policy"] if role == "team+password_policy" else [],
                may_elevate=role == "elevated")
        # A second owner, so that an owner's own actions never trip over "the last owner".
        Account.create(organisation=acme, username="otto", email="otto@acme.test", role="owner")
        return {"orgs": {"acme": acme, "acme-eu": child, "holding": holding, "globex": globex}, "actors": actors}


def client_for(app, account: Account, role: str) -> WebClient:
    """A client signed in as ``account`` (a session made directly: no password hashing)."""
    with app.app_context():
        token = sessions.start(account, "password", acting_role="owner" if role == "elevated" else None)
    client = WebClient(app.test_client())
    client.client.set_cookie("gatehouse_session", token, domain="localhost")
    assert client.get("/account").status_code == 200  # a page, for the CSRF token
    return client


def url_for_rule(app, rule, object_id: int | None, rest: list) -> str:
    values = {name: object_id for name in rule.arguments}
    if rest and rest[0]:
        values[rest[0]] = object_id
    if len(rest) > 1:
        values.update(rest[1])
    with app.test_request_context():
        return app.url_for(rule.endpoint, **values)


@pytest.mark.parametrize("endpoint", sorted(ROUTES))
def test_each_role_gets_what_the_matrix_says(app, world, endpoint):
    capability, kind, *rest = ROUTES[endpoint]
    [rule] = [r for r in admin_rules(app) if r.endpoint == endpoint]
    methods = sorted(rule.methods - {"HEAD", "OPTIONS"})
    counter = itertools.count()
    problems = []
    for role in ROLES:
        client = client_for(app, world["actors"][role], role)
        allowed = role in ALLOWED[capability]
        targets = [("acme", True)] if kind is None else [
            ("acme", True), ("acme-eu", kind in PEOPLE), ("holding", False), ("globex", False)]
        for (where, inside), method in itertools.product(targets, methods):
            object_id = None
            if kind is not None:
                with app.app_context():
                    object_id = make_objects(world["orgs"][where], f"{where}-{next(counter)}")[kind]
            url = url_for_rule(app, rule, object_id, rest)
            response = client.get(url) if method == "GET" else client.post(url, {})
            status = response.status_code
            body = response.get_data(as_text=True)
            # A streamed answer (the CSV export) keeps its request context until closed.
            response.close()
            if not allowed:
                ok = status == 403
                want = "403"
            elif not inside:
                ok = status == 404
                want = "404"
            else:
                # Past the checks: a page, a redirect, or the view's own answer to an empty
                # form (400/422) — but never the CSRF refusal, which would prove nothing.
                ok = status not in (401, 403, 404, 405) and status < 500 and not (
                    status == 400 and CSRF_EXPLANATION[0] in body)
                want = "allowed"
            if not ok:
                problems.append(f"{role:>22} {method:4} {where:8} {url}: {status}, expected {want}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role, url, fields", [
    ("technician", "/admin/users/new", {"username": "boss", "email": "boss@acme.test", "role": "owner"}),
    ("technician", "/admin/team/new", {"username": "boss", "email": "boss@acme.test", "role": "owner",
                                       "mode": "invite"}),
    ("team", "/admin/users/new", {"username": "boss", "email": "boss@acme.test", "role": "technician"}),
    # Elevation opens the owner's pages for 15 minutes; it never makes that power permanent.
    ("elevated", "/admin/users/new", {"username": "boss", "email": "boss@acme.test", "role": "owner"}),
    ("elevated", "/admin/team/new", {"username": "boss", "email": "boss@acme.test", "role": "owner",
                                     "mode": "create"}),
])
def test_nobody_grants_a_role_above_their_own(app, world, role, url, fields):
    client = client_for(app, world["actors"][role], role)
    client.get(url)
    response = client.post(url, {**fields, "organisation": str(world["orgs"]["acme"].id)})
    assert response.status_code in (403, 422)
    with app.app_context():
        assert Account.get_or_none(Account.username == "boss") is None


def test_an_elevated_team_user_cannot_give_themselves_rights(app, world):
    me = world["actors"]["elevated"]
    client = client_for(app, me, "elevated")
    client.get(f"/admin/team/{me.id}/edit")
    response = client.post(f"/admin/team/{me.id}/edit", {"display_name": "me", "email": me.email, "role": "team",
                                                          "may_elevate": "y", "permissions": "password_policy"})
    assert response.status_code in (403, 422)
    with app.app_context():
        assert Account.get_by_id(me.id).permissions == []


@pytest.mark.parametrize("url", ["/admin/team/{id}/delete", "/admin/team/{id}/deactivate", "/admin/users/{id}/delete"])
def test_a_technician_cannot_remove_themselves(app, world, url):
    me = world["actors"]["technician"]
    client = client_for(app, me, "technician")
    client.get(url.format(id=me.id))
    response = client.post(url.format(id=me.id), {})
    if response.status_code == 303:  # refused with a message on the page it goes back to
        response = client.get(response.headers["Location"])
    assert "your own account" in response.get_data(as_text=True)
    with app.app_context():
        assert Account.get_by_id(me.id).status == "active"
