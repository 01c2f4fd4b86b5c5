"""Admin: policies — list, add, edit in place, enable, reorder (buttons and drag-and-drop
endpoint), delete, inline validation, the value picker and the policy tester against the
Acme demo directory."""

from __future__ import annotations

import pytest

from models import (
    Account,
    ApprovalProfile,
    AuditEvent,
    Directory,
    Organisation,
    Policy,
    ProfileDirectory,
)
from services import crypto
from services import directory as directory_service
from services import policy as policy_service
from tests.support.slapd import DEMO_SERVICE_DN, DEMO_SERVICE_PASSWORD

FINANCE_DN = "cn=finance-approvers,ou=groups,dc=acme,dc=test"


def make_profile(org, name, kind="user", directories=(None,), default=False, fallback_approver=None):
    profile = ApprovalProfile.create(organisation=org, name=name, kind=kind, server_url="http://gatehouse.test",
                                     subject="Sign in", message="{link}", is_default=default,
                                     fallback_approver=fallback_approver)
    for position, directory in enumerate(directories):
        ProfileDirectory.create(profile=profile, directory=directory, position=position)
    return profile


@pytest.fixture
def setup(app, owner):
    """acme: a local-only default profile, a demo directory (not yet reachable) and a
    manager profile that searches it; globex: a profile of another organisation."""
    with app.app_context():
        org = Organisation.get(slug="acme")
        demo = Directory.create(organisation=org, name="Acme LDAP", servers=["ldap://127.0.0.1:9"], base_dn="dc=acme,dc=test",
                                bind_dn=DEMO_SERVICE_DN, bind_password_encrypted=crypto.encrypt(DEMO_SERVICE_PASSWORD),
                                login_attributes=["uid", "mail"], connect_timeout=2, receive_timeout=5)
        everyone = make_profile(org, "Everyone", directories=(None,), default=True)
        managers = make_profile(org, "Managers", kind="manager", directories=(demo,))
        globex = Organisation.create(slug="globex", name="Globex")
        foreign = make_profile(globex, "Globex profile")
    yield {"org": org, "demo": demo, "everyone": everyone, "managers": managers, "foreign": foreign}
    directory_service.reset_connections()


@pytest.fixture
def demo_ldap(app, setup, embedded_ldap):
    """Point the demo directory at the embedded Acme directory."""
    with app.app_context():
        Directory.update(servers=[embedded_ldap.url]).where(Directory.id == setup["demo"].id).execute()
    directory_service.reset_connections()
    return setup


def add(org, profile, attribute, values, directory=None, enabled=True, name=""):
    position = Policy.select().where(Policy.organisation == org).count()
    return Policy.create(organisation=org, position=position, profile=profile, directory=directory, attribute=attribute,
                         values=values, enabled=enabled, name=name)


def form(profile, directory="local", attribute="username", values="ann", prefix="new", **extra):
    data = {f"{prefix}-profile": str(profile.id), f"{prefix}-directory": directory, f"{prefix}-attribute": attribute,
            f"{prefix}-values": values, f"{prefix}-enabled": "y", f"{prefix}-name": extra.pop("name", "")}
    data.update({f"{prefix}-{k}": v for k, v in extra.items()})
    return data


def order(app, org):
    with app.app_context():
        return [p.name for p in policy_service.policies_of(org)]


def test_policy_pages_need_an_admin(client, setup):
    for url in ("/admin/policies", "/admin/policies/tester", "/admin/policies/values"):
        response = client.get(url)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_empty_list_names_the_default_profile(admin_client, setup):
    html = admin_client.get("/admin/policies").get_data(as_text=True)
    assert "No policies yet." in html
    assert "No match → the default profile <strong>Everyone</strong>" in html
    assert "js/policies.js" in html and "Add a policy" in html


def test_the_table_is_also_an_htmx_partial(admin_client, app, setup):
    with app.app_context():
        add(setup["org"], setup["managers"], "department", ["Finance", "re:fin.*"], directory=setup["demo"], name="Finance")
    response = admin_client.get("/admin/policies", htmx=True, target="policy-table")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html and 'id="policy-table"' in html
    assert "Finance" in html and "re:fin.*" in html and "Acme LDAP" in html and "manager approval" in html
    assert "Add a policy" not in html
    assert "HX-Request" in response.headers["Vary"]


def test_add_a_policy_without_javascript(admin_client, app, setup):
    admin_client.get("/admin/policies")
    response = admin_client.post("/admin/policies/new", form(setup["everyone"], values="ann, bob\nre:^svc-.+$", name="Named"))
    assert response.status_code == 303 and response.headers["Location"] == "/admin/policies"
    with app.app_context():
        policy = Policy.get()
        assert (policy.attribute, policy.values, policy.directory, policy.enabled, policy.position) == (
            "username", ["ann", "bob", "re:^svc-.+$"], None, True, 0)
        event = AuditEvent.get(AuditEvent.action == "policy.created")
        assert event.actor == "olga" and event.target == "Named"
    assert "Named" in admin_client.get("/admin/policies").get_data(as_text=True)


def test_add_with_htmx_answers_a_fresh_form_and_the_new_table(admin_client, app, setup):
    admin_client.get("/admin/policies")
    response = admin_client.post("/admin/policies/new", form(setup["managers"], directory=str(setup["demo"].id),
                                                             attribute="MEMBEROF", values=FINANCE_DN),
                                 htmx=True, target="policy-add")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert 'id="policy-add"' in html and 'id="policy-table" class="card card-flush" hx-swap-oob="true"' in html
    assert FINANCE_DN in html
    with app.app_context():
        assert Policy.get().attribute == "memberOf"  # pseudo-attributes are stored in one spelling


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"values": "re:abc("}, "not a valid regular expression: missing ), unterminated subpattern at position 3"),
        ({"values": "ok\nre:(a+)+$"}, "repeats a group that itself repeats"),
        ({"values": " , \n"}, "enter at least one value"),
        ({"attribute": "not an attribute!"}, "is not an attribute name"),
        ({"attribute": ""}, "enter an attribute"),
        ({"profile": "foreign"}, "choose one of this organisation&#39;s approval profiles"),
        ({"profile": "nonsense"}, "choose one of this organisation&#39;s approval profiles"),
        ({"directory": "demo"}, ("Acme LDAP is not one of the fallback directories of the approval profile Everyone "
                                 "(Local accounts): add it there, or choose one of those")),
        ({"directory": "999"}, "choose one of this organisation&#39;s directories"),
        ({"name": "x" * 101}, "Use at most 100 characters."),
    ],
)
def test_bad_input_is_explained_next_to_the_field_and_nothing_is_saved(admin_client, app, setup, overrides, message):
    data = form(setup["everyone"])
    if overrides.get("profile") == "foreign":
        overrides["profile"] = str(setup["foreign"].id)
    if overrides.get("directory") == "demo":
        overrides["directory"] = str(setup["demo"].id)
    data.update({f"new-{k}": v for k, v in overrides.items()})
    admin_client.get("/admin/policies")
    for htmx in (False, True):
        response = admin_client.post("/admin/policies/new", data, htmx=htmx, target="policy-add" if htmx else None)
        html = response.get_data(as_text=True)
        assert response.status_code == 422
        assert message in html
        assert ("<html" in html) is not htmx
    with app.app_context():
        assert Policy.select().count() == 0


def test_the_managers_profile_accepts_its_own_directory_only(admin_client, app, setup):
    admin_client.get("/admin/policies")
    response = admin_client.post("/admin/policies/new", form(setup["managers"], directory="local"))
    assert response.status_code == 422
    assert "Local accounts is not one of the fallback directories of the approval profile Managers (Acme LDAP)" in \
        response.get_data(as_text=True)


def test_writes_need_the_csrf_token(admin_client, app, setup):
    with app.app_context():
        policy = add(setup["org"], setup["everyone"], "username", ["ann"], name="a")
    admin_client.get("/admin/policies")
    for url, data in [
        ("/admin/policies/new", form(setup["everyone"])),
        (f"/admin/policies/{policy.id}/move", {"direction": "down"}),
        (f"/admin/policies/{policy.id}/delete", {}),
        (f"/admin/policies/{policy.id}/enabled", {"enabled": "0"}),
        ("/admin/policies/reorder", {"order": str(policy.id)}),
    ]:
        assert admin_client.post(url, data, csrf=False).status_code == 400, url
    with app.app_context():
        assert Policy.select().count() == 1 and Policy.get().enabled


def test_edit_in_place_swaps_the_row_for_a_form_and_back(admin_client, app, setup):
    with app.app_context():
        policy = add(setup["org"], setup["everyone"], "username", ["ann"], name="Ann")
    admin_client.get("/admin/policies")
    row = f"policy-{policy.id}"
    response = admin_client.get(f"/admin/policies/{policy.id}/edit", htmx=True, target=row)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith(f'<tr id="{row}"') and f'name="{row}-values"' in html and "Cancel" in html

    bad = admin_client.post(f"/admin/policies/{policy.id}/edit", form(setup["everyone"], values="re:[", prefix=row),
                            htmx=True, target=row)
    assert bad.status_code == 422 and "not a valid regular expression" in bad.get_data(as_text=True)
    assert f'<tr id="{row}"' in bad.get_data(as_text=True)

    good = admin_client.post(f"/admin/policies/{policy.id}/edit",
                             form(setup["everyone"], attribute="mail", values="*@acme.test", prefix=row, name="Staff"),
                             htmx=True, target=row)
    html = good.get_data(as_text=True)
    assert good.status_code == 200 and "<html" not in html and "*@acme.test" in html and "<form" in html
    assert f'name="{row}-values"' not in html  # the display row again
    with app.app_context():
        saved = Policy.get_by_id(policy.id)
        assert (saved.name, saved.attribute, saved.values) == ("Staff", "mail", ["*@acme.test"])
        assert AuditEvent.get(AuditEvent.action == "policy.updated").target == "Staff"

    cancel = admin_client.get(f"/admin/policies/{policy.id}/row", htmx=True, target=row)
    assert cancel.status_code == 200 and "Staff" in cancel.get_data(as_text=True)


def test_edit_page_works_without_javascript(admin_client, app, setup):
    with app.app_context():
        policy = add(setup["org"], setup["everyone"], "username", ["ann"], name="Ann")
    url = f"/admin/policies/{policy.id}/edit"
    html = admin_client.get(url).get_data(as_text=True)
    assert "<html" in html and "Edit policy 1: Ann" in html and "ann</textarea>" in html
    response = admin_client.post(url, form(setup["everyone"], values="ann\nbob", prefix=f"policy-{policy.id}", name="Ann"))
    assert response.status_code == 303
    with app.app_context():
        assert Policy.get_by_id(policy.id).values == ["ann", "bob"]
    response = admin_client.post(url, form(setup["foreign"], prefix=f"policy-{policy.id}"))
    assert response.status_code == 422 and "<html" in response.get_data(as_text=True)


def test_other_organisations_policies_are_not_found(admin_client, app, setup):
    with app.app_context():
        globex = Organisation.get(slug="globex")
        theirs = add(globex, setup["foreign"], "username", ["x"])
    admin_client.get("/admin/policies")
    assert admin_client.get(f"/admin/policies/{theirs.id}/edit").status_code == 404
    assert admin_client.post(f"/admin/policies/{theirs.id}/delete").status_code == 404


def test_enable_and_disable(admin_client, app, setup):
    with app.app_context():
        policy = add(setup["org"], setup["everyone"], "username", ["ann"])
    admin_client.get("/admin/policies")
    response = admin_client.post(f"/admin/policies/{policy.id}/enabled", {"enabled": "0"}, htmx=True,
                                 target=f"policy-{policy.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html and 'aria-checked="false"' in html and "policy-disabled" in html
    with app.app_context():
        assert not Policy.get_by_id(policy.id).enabled
    assert admin_client.post(f"/admin/policies/{policy.id}/enabled", {"enabled": "1"}).status_code == 303
    with app.app_context():
        assert Policy.get_by_id(policy.id).enabled


def test_reorder_with_the_up_and_down_buttons(admin_client, app, setup):
    with app.app_context():
        a, _b, c = (add(setup["org"], setup["everyone"], "username", [n], name=n) for n in "abc")
    admin_client.get("/admin/policies")
    assert admin_client.post(f"/admin/policies/{c.id}/move", {"direction": "up"}).status_code == 303
    assert order(app, setup["org"]) == ["a", "c", "b"]
    response = admin_client.post(f"/admin/policies/{a.id}/move", {"direction": "down"}, htmx=True, target="policy-table")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html and 'id="policy-table"' in html
    assert order(app, setup["org"]) == ["c", "a", "b"]
    assert admin_client.post(f"/admin/policies/{a.id}/move", {"direction": "sideways"}).status_code == 400
    with app.app_context():
        assert AuditEvent.select().where(AuditEvent.action == "policy.moved").count() == 2


def test_reorder_endpoint_applies_a_whole_new_order(admin_client, app, setup):
    with app.app_context():
        a, b, c = (add(setup["org"], setup["everyone"], "username", [n], name=n) for n in "abc")
    admin_client.get("/admin/policies")
    response = admin_client.post("/admin/policies/reorder", {"order": f"{c.id},{a.id},{b.id}"}, htmx=True,
                                 target="policy-table")
    assert response.status_code == 200 and "<html" not in response.get_data(as_text=True)
    assert order(app, setup["org"]) == ["c", "a", "b"]
    assert admin_client.post("/admin/policies/reorder", {"order": f"{b.id},{c.id},{a.id}"}).status_code == 303
    assert order(app, setup["org"]) == ["b", "c", "a"]


@pytest.mark.parametrize("order_value", ["{a},{b}", "{a},{b},{c},999", "{a},{a},{b}", "{a},x,{b}"])
def test_reorder_with_a_wrong_id_list_is_refused(admin_client, app, setup, order_value):
    with app.app_context():
        a, b, c = (add(setup["org"], setup["everyone"], "username", [n], name=n) for n in "abc")
    admin_client.get("/admin/policies")
    value = order_value.format(a=a.id, b=b.id, c=c.id)
    for htmx in (False, True):
        response = admin_client.post("/admin/policies/reorder", {"order": value}, htmx=htmx,
                                     target="policy-table" if htmx else None)
        html = response.get_data(as_text=True)
        assert response.status_code == 400
        assert "The order was not changed:" in html and "reload the page and try again" in html
    assert order(app, setup["org"]) == ["a", "b", "c"]


def test_delete_asks_first_and_the_rest_move_up(admin_client, app, setup):
    with app.app_context():
        a, b, _c = (add(setup["org"], setup["everyone"], "username", [n], name=n) for n in "abc")
    page = admin_client.get(f"/admin/policies/{a.id}/delete").get_data(as_text=True)
    assert "Delete the policy a?" in page and "This cannot be undone." in page
    assert admin_client.post(f"/admin/policies/{a.id}/delete").status_code == 303
    response = admin_client.post(f"/admin/policies/{b.id}/delete", htmx=True, target="policy-table")
    assert response.status_code == 200 and "<html" not in response.get_data(as_text=True)
    with app.app_context():
        assert [(p.name, p.position) for p in Policy.select()] == [("c", 0)]
        assert AuditEvent.select().where(AuditEvent.action == "policy.deleted").count() == 2


@pytest.mark.parametrize(
    "values, expected",
    [
        ("re:abc(", "not a valid regular expression: missing ), unterminated subpattern at position 3"),
        ("Finance, re:(a+)+", "repeats a group that itself repeats"),
        ("Finance\nfin*", "2 values"),
    ],
)
def test_values_are_checked_while_typed(admin_client, setup, values, expected):
    admin_client.get("/admin/policies")
    response = admin_client.post("/admin/policies/validate?prefix=new", {"new-values": values}, htmx=True,
                                 target="new-values-feedback")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    assert html.lstrip().startswith('<div id="new-values-feedback"') and expected in html


def test_validate_refuses_odd_prefixes(admin_client, setup):
    admin_client.get("/admin/policies")
    assert admin_client.post("/admin/policies/validate?prefix=x%22onload", {}, htmx=True).status_code == 400


def test_value_picker_lists_local_usernames(admin_client, setup):
    html = admin_client.get("/admin/policies/values?prefix=new&new-directory=local&new-attribute=username",
                            htmx=True).get_data(as_text=True)
    assert '<option value="olga">olga</option>' in html and "<html" not in html
    html = admin_client.get("/admin/policies/values?prefix=new&new-directory=local&new-attribute=memberOf",
                            htmx=True).get_data(as_text=True)
    assert "Local accounts have no memberOf attribute; use username or mail." in html


@pytest.mark.parametrize(
    "attribute, present",
    [("department", "Finance"), ("group_name", "finance-approvers"), ("memberOf", FINANCE_DN), ("title", "VP Finance"),
     ("mail", "zoe@acme.test")],
)
def test_value_picker_reads_the_directory(admin_client, demo_ldap, attribute, present):
    demo = demo_ldap["demo"]
    response = admin_client.get(f"/admin/policies/values?prefix=new&new-directory={demo.id}&new-attribute={attribute}",
                                htmx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and f'<option value="{present}">' in html


def test_value_picker_reports_an_unreachable_directory(admin_client, setup):
    demo = setup["demo"]
    html = admin_client.get(f"/admin/policies/values?prefix=new&new-directory={demo.id}&new-attribute=department",
                            htmx=True).get_data(as_text=True)
    assert "field-error" in html and "no ldap server answered" in html.lower()


# --------------------------------------------------------------------------
# The tester, against the demo directory
# --------------------------------------------------------------------------


@pytest.fixture
def demo_policies(app, demo_ldap):
    """1 memberOf finance-approvers (DN spelled differently) → Managers;
    2 disabled; 3 department Finance → Managers; 4 group_name admins → Managers.
    The default profile Everyone also searches the demo directory after local accounts."""
    s = demo_ldap
    with app.app_context():
        ProfileDirectory.create(profile=s["everyone"], directory=s["demo"], position=1)
        ApprovalProfile.update(fallback_approver="security@acme.test").where(ApprovalProfile.id == s["managers"].id).execute()
        add(s["org"], s["managers"], "memberOf", ["CN=Finance-Approvers, OU=Groups, DC=acme, DC=test"], s["demo"], name="Finance approvers")
        add(s["org"], s["managers"], "username", ["*"], s["demo"], enabled=False, name="Everybody (off)")
        add(s["org"], s["managers"], "department", ["re:fin.*"], s["demo"], name="Finance department")
        add(s["org"], s["managers"], "group_name", ["admins"], s["demo"], name="Admins")
    return s


def run_tester(client, identifier, htmx=False):
    response = client.get(f"/admin/policies/tester?identifier={identifier}", htmx=htmx,
                          target="tester-result" if htmx else None)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_tester_page_and_partial(admin_client, demo_policies):
    page = admin_client.get("/admin/policies/tester").get_data(as_text=True)
    assert "<html" in page and "Username or email" in page
    html = run_tester(admin_client, "fiona", htmx=True)
    assert "<html" not in html and html.lstrip().startswith('<section id="tester-result"')


def test_tester_shows_the_matched_policy_and_the_managers_mail(admin_client, demo_policies):
    html = run_tester(admin_client, "fiona")
    assert "Fiona Okafor" in html and "Acme LDAP" in html and "fiona@acme.test" in html
    assert "Finance approvers" in html and "matched" in html
    assert "memberOf &#39;cn=finance-approvers,ou=groups,dc=acme,dc=test&#39; matches" in html
    assert "<strong>Managers</strong> (manager approval)" in html and "matched policy 1" in html
    assert "<strong>olivia@acme.test</strong>" in html  # fiona's manager
    assert "Everybody (off)" not in html  # policies after the match are not tried


def test_tester_explains_each_policy_tried(admin_client, demo_policies):
    html = run_tester(admin_client, "tom")  # Finance, no groups, no mail; manager fiona
    assert "attribute missing" in html and "the user has no memberOf value" in html
    assert "disabled" in html and "Finance department" in html
    assert "department &#39;Finance&#39; matches &#39;re:fin.*&#39;" in html
    assert "no mail" in html and "<strong>fiona@acme.test</strong>" in html


def test_tester_falls_back_to_the_default_profile(admin_client, demo_policies):
    html = run_tester(admin_client, "zoe")
    assert "Zoë Ångström" in html and "no match" in html
    assert "default: no policy matched" in html and "<strong>Everyone</strong> (user approval)" in html
    assert "Link emailed to" in html and "<strong>zoe@acme.test</strong>" in html


def test_tester_uses_the_fallback_approver_when_there_is_no_manager(admin_client, demo_policies):
    html = run_tester(admin_client, "olivia")  # admins, CEO: no manager attribute
    assert "Admins" in html and "<strong>security@acme.test</strong>" in html and "has no manager" in html


def test_tester_local_user_and_unknown_user(admin_client, demo_policies):
    html = run_tester(admin_client, "olga")
    assert "Local accounts" in html and "other directory" in html and "default: no policy matched" in html
    html = run_tester(admin_client, "nobody")
    assert "nobody was not found" in html and "Local accounts, Acme LDAP" in html


def test_decide_is_what_sign_in_calls(app, demo_policies, create_account):
    org = demo_policies["org"]
    with app.app_context():
        hannah = policy_service.decide(org, "hannah@acme.test")  # by mail, a login attribute
        assert hannah.found and hannah.directory.name == "Acme LDAP" and hannah.mail == "hannah@acme.test"
        assert hannah.profile.name == "Managers" and hannah.approver.mail == "fiona@acme.test"
        assert hannah.approver.source == "manager"
        assert [s.outcome for s in hannah.decision.trace] == ["matched"]

    ann = create_account(org, "ann")
    with app.app_context():
        Account.update(sponsor_email="boss@acme.test").where(Account.id == ann.id).execute()
        ProfileDirectory.create(profile=demo_policies["managers"], directory=None, position=1)
        Policy.update(position=Policy.position + 1).where(Policy.organisation == org).execute()
        Policy.create(organisation=org, position=0, profile=demo_policies["managers"], directory=None,
                      attribute="username", values=["ann"])
        result = policy_service.decide(org, ann.username)
        assert result.directory is None and result.profile.name == "Managers"
        assert (result.approver.mail, result.approver.source) == ("boss@acme.test", "sponsor")
        assert policy_service.decide(org, "\x00").error


def test_decide_stops_when_a_directory_cannot_answer(admin_client, app, setup):
    """An outage must not fall through to the next directory and a weaker profile."""
    with app.app_context():
        ProfileDirectory.create(profile=setup["everyone"], directory=setup["demo"], position=1)
        result = policy_service.decide(setup["org"], "fiona")
        assert not result.found and result.error.startswith("Acme LDAP: no LDAP server answered")
    assert "Cannot decide for fiona" in run_tester(admin_client, "fiona")
