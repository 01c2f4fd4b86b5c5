"""Configuration as code (services.configuration) on SQLite and PostgreSQL.

Each test gets an empty migrated database from the shared ``database`` fixture
(tests/support/database.py): a SQLite file, then PostgreSQL when it is reachable.
"""

from __future__ import annotations

import tomllib

import pytest

from models import (
    ALL_MODELS,
    ApprovalProfile,
    AuditEvent,
    MfaPolicy,
    MfaPolicyAccount,
    Directory,
    MailServer,
    Organisation,
    PasswordPolicy,
    Policy,
)
from services import configuration, crypto, profiles
from services.configuration import ConfigFileError, export_config, import_config, parse

ENV = {"ACME_LDAP_PASSWORD": "ldap-bind-secret-1", "SMTP_PASSWORD": "smtp-secret-2"}
LITERAL_SECRET = "literal-mail-secret-3"
NO_APPROVALS = {"approval_profiles": 0, "policies": 0, "password_policies": 0, "mfa_policies": 0}

FULL = f"""
[[organisations]]
slug = "acme"
name = "Acme Corporation"
parent = "holding"   # declared further down: forward references are allowed

  [[organisations.directories]]
  name = "Acme LDAP"
  servers = ["ldap://127.0.0.1:3389", "ldap://10.0.0.2:389"]
  tls_mode = "starttls"
  ca_file = "/etc/ssl/certs/acme-ca.pem"
  verify_certificate = false
  bind_dn = "cn=gatehouse,ou=services,dc=acme,dc=test"
  bind_password = "env:ACME_LDAP_PASSWORD"
  base_dn = "dc=acme,dc=test"
  login_attributes = ["uid", "mail"]
  mail_attribute = "mail"
  manager_attribute = "manager"
  group_attribute = "memberOf"
  nested_groups = true
  connect_timeout = 7
  receive_timeout = 30

  [[organisations.directories]]
  name = "Acme AD"
  servers = ["ldaps://ad.acme.test:636"]
  tls_mode = "ldaps"
  base_dn = "dc=ad,dc=acme,dc=test"

  [[organisations.mail_servers]]
  name = "Relay"
  host = "smtp.acme.test"
  port = 587
  security = "starttls"
  username = "gatehouse"
  password = "env:SMTP_PASSWORD"
  from_address = "Gatehouse <no-reply@acme.test>"
  verify_certificate = true
  timeout = 15

  [[organisations.mail_servers]]
  name = "Backup relay"
  host = "backup.acme.test"
  port = 465
  security = "ssl"
  username = "gh"
  password = "{LITERAL_SECRET}"
  from_address = "no-reply@acme.test"
  ca_file = "/etc/ssl/certs/relay.pem"

[[organisations]]
slug = "holding"
name = "Holding Group"
"""

# A small valid file that bad-input cases below are derived from.
BASE = """
[[organisations]]
slug = "good"
name = "Good Org"

  [[organisations.directories]]
  name = "LDAP"
  servers = ["ldap://ldap.good.test"]
  base_dn = "dc=good,dc=test"

  [[organisations.mail_servers]]
  name = "Relay"
  host = "smtp.good.test"
  from_address = "no-reply@good.test"
"""


def snapshot() -> dict[str, list[tuple]]:
    """Every row of every table, for "the database did not change" assertions."""
    return {
        model.__name__: list(model.select().order_by(model.id).tuples()) for model in ALL_MODELS
    }


def row_ids() -> dict[str, list[int]]:
    """The primary keys of the configuration tables."""
    return {
        model.__name__: [row[0] for row in model.select(model.id).order_by(model.id).tuples()]
        for model in (Organisation, Directory, MailServer)
    }


def refused(text: str, environ=None) -> ConfigFileError:
    """Import ``text`` expecting refusal; check nothing was written; return the error."""
    before = snapshot()
    with pytest.raises(ConfigFileError) as info:
        import_config(text, ENV if environ is None else environ)
    assert snapshot() == before
    return info.value


# --------------------------------------------------------------------------- import


def test_full_import_creates_everything_with_the_right_values(database):
    summary = import_config(FULL, ENV)

    assert summary.created == {"organisations": 2, "directories": 2, "mail_servers": 2, **NO_APPROVALS}
    assert summary.updated == {"organisations": 0, "directories": 0, "mail_servers": 0, **NO_APPROVALS}
    acme = Organisation.get(Organisation.slug == "acme")
    holding = Organisation.get(Organisation.slug == "holding")
    assert (acme.name, acme.parent_id) == ("Acme Corporation", holding.id)
    assert (holding.name, holding.parent_id) == ("Holding Group", None)

    ldap, ad = Directory.select().where(Directory.organisation == acme).order_by(Directory.position)
    assert ldap.name == "Acme LDAP" and ldap.position == 0
    assert ldap.servers == ["ldap://127.0.0.1:3389", "ldap://10.0.0.2:389"]
    assert ldap.tls_mode == "starttls"
    assert ldap.ca_file == "/etc/ssl/certs/acme-ca.pem"
    assert ldap.verify_certificate is False
    assert ldap.bind_dn == "cn=gatehouse,ou=services,dc=acme,dc=test"
    assert ldap.base_dn == "dc=acme,dc=test"
    assert ldap.login_attributes == ["uid", "mail"]
    assert (ldap.mail_attribute, ldap.manager_attribute, ldap.group_attribute) == ("mail", "manager", "memberOf")
    assert ldap.nested_groups is True
    assert (ldap.connect_timeout, ldap.receive_timeout) == (7, 30)
    assert crypto.decrypt(ldap.bind_password_encrypted) == ENV["ACME_LDAP_PASSWORD"]
    assert ENV["ACME_LDAP_PASSWORD"] not in ldap.bind_password_encrypted
    assert ldap.bind_password_ref == "env:ACME_LDAP_PASSWORD"

    # Defaults fill every field the file leaves out.
    assert ad.name == "Acme AD" and ad.position == 1 and ad.tls_mode == "ldaps"
    assert ad.ca_file is None and ad.verify_certificate is True and ad.bind_dn == ""
    assert ad.login_attributes == ["uid"] and ad.nested_groups is False
    assert (ad.connect_timeout, ad.receive_timeout) == (5, 10)
    assert ad.bind_password_encrypted is None and ad.bind_password_ref is None

    relay, backup = MailServer.select().where(MailServer.organisation == acme).order_by(MailServer.position)
    assert (relay.name, relay.host, relay.port, relay.security, relay.username) == (
        "Relay", "smtp.acme.test", 587, "starttls", "gatehouse")
    assert relay.from_address == "Gatehouse <no-reply@acme.test>"
    assert relay.verify_certificate is True and relay.ca_file is None and relay.timeout == 15
    assert crypto.decrypt(relay.password_encrypted) == ENV["SMTP_PASSWORD"]
    assert ENV["SMTP_PASSWORD"] not in relay.password_encrypted
    assert relay.password_ref == "env:SMTP_PASSWORD"
    assert (backup.position, backup.port, backup.security, backup.timeout) == (1, 465, "ssl", 10)
    assert backup.ca_file == "/etc/ssl/certs/relay.pem"
    assert crypto.decrypt(backup.password_encrypted) == LITERAL_SECRET
    assert LITERAL_SECRET not in backup.password_encrypted
    assert backup.password_ref is None


def test_env_references_default_to_the_process_environment(database, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    import_config(FULL)
    relay = MailServer.get(MailServer.name == "Relay")
    assert crypto.decrypt(relay.password_encrypted) == ENV["SMTP_PASSWORD"]


def test_export_then_import_changes_nothing_and_exports_the_same_text(database):
    import_config(FULL, ENV)
    before = snapshot()
    exported = export_config()

    summary = import_config(exported, ENV)

    assert not summary.changed
    assert summary.unchanged == {"organisations": 2, "directories": 2, "mail_servers": 2, **NO_APPROVALS}
    assert snapshot() == before  # ids, values, encrypted tokens and updated_at alike
    assert export_config() == exported


def test_export_is_valid_toml_in_a_stable_order(database):
    import_config(FULL, ENV)
    data = tomllib.loads(export_config())
    assert [org["slug"] for org in data["organisations"]] == ["acme", "holding"]
    acme = data["organisations"][0]
    assert acme["parent"] == "holding"
    assert [d["name"] for d in acme["directories"]] == ["Acme LDAP", "Acme AD"]
    assert [m["name"] for m in acme["mail_servers"]] == ["Relay", "Backup relay"]
    assert "parent" not in data["organisations"][1]


def test_export_of_an_empty_database_imports_as_nothing(database):
    text = export_config()
    assert tomllib.loads(text) == {}
    assert not import_config(text, ENV).changed


def test_reimport_updates_in_place_without_duplicates(database):
    import_config(FULL, ENV)
    ids = row_ids()
    untouched = Directory.get(Directory.name == "Acme AD")
    ldap_before = Directory.get(Directory.name == "Acme LDAP")
    old_token = MailServer.get(MailServer.name == "Relay").password_encrypted
    changed = (
        FULL.replace('name = "Acme Corporation"', 'name = "Acme Corp."')
        .replace("timeout = 15", "timeout = 20")
        .replace("connect_timeout = 7", "connect_timeout = 9")
    )
    environ = dict(ENV, SMTP_PASSWORD="rotated")

    summary = import_config(changed, environ)

    assert summary.created == {"organisations": 0, "directories": 0, "mail_servers": 0, **NO_APPROVALS}
    assert summary.updated == {"organisations": 1, "directories": 1, "mail_servers": 1, **NO_APPROVALS}
    assert summary.unchanged == {"organisations": 1, "directories": 1, "mail_servers": 1, **NO_APPROVALS}
    assert row_ids() == ids
    assert Organisation.get(Organisation.slug == "acme").name == "Acme Corp."
    ldap = Directory.get(Directory.name == "Acme LDAP")
    assert ldap.connect_timeout == 9 and ldap.updated_at > ldap_before.updated_at
    relay = MailServer.get(MailServer.name == "Relay")
    assert relay.timeout == 20
    assert relay.password_encrypted != old_token
    assert crypto.decrypt(relay.password_encrypted) == "rotated"
    assert Directory.get(Directory.name == "Acme AD").updated_at == untouched.updated_at


def test_reordering_changes_positions(database):
    import_config(FULL, ENV)
    swapped = tomllib.loads(export_config())
    acme = swapped["organisations"][0]
    acme["directories"].reverse()
    import_config(_dump(swapped), ENV)
    names = [d.name for d in Directory.select().order_by(Directory.position)]
    assert names == ["Acme AD", "Acme LDAP"]


def _dump(data: dict) -> str:
    """TOML for a parsed export (tomli_w is enough for a test)."""
    import tomli_w

    return tomli_w.dumps(data)


def test_import_never_deletes_what_the_file_leaves_out(database):
    import_config(FULL, ENV)
    import_config(BASE, ENV)
    assert Organisation.select().count() == 3
    assert Directory.select().count() == 3
    assert MailServer.select().count() == 3


def test_secret_absent_from_the_file_keeps_the_stored_one(database):
    import_config(FULL, ENV)
    stored = MailServer.get(MailServer.name == "Backup relay").password_encrypted
    without = FULL.replace(f'password = "{LITERAL_SECRET}"\n', "")

    import_config(without, ENV)

    assert MailServer.get(MailServer.name == "Backup relay").password_encrypted == stored


def test_empty_secret_clears_and_literal_replaces_a_reference(database):
    import_config(FULL, ENV)
    text = FULL.replace('password = "env:SMTP_PASSWORD"', 'password = "plain-now"').replace(
        f'password = "{LITERAL_SECRET}"', 'password = ""'
    )
    import_config(text, ENV)
    relay = MailServer.get(MailServer.name == "Relay")
    assert crypto.decrypt(relay.password_encrypted) == "plain-now" and relay.password_ref is None
    backup = MailServer.get(MailServer.name == "Backup relay")
    assert backup.password_encrypted is None and backup.password_ref is None


def test_export_contains_no_plaintext_secret(database):
    import_config(FULL, ENV)
    exported = export_config()
    for secret in (*ENV.values(), LITERAL_SECRET):
        assert secret not in exported
    assert 'bind_password = "env:ACME_LDAP_PASSWORD"' in exported
    assert 'password = "env:SMTP_PASSWORD"' in exported
    backup = next(
        m for m in tomllib.loads(exported)["organisations"][0]["mail_servers"] if m["name"] == "Backup relay"
    )
    assert "password" not in backup
    # Re-importing the export keeps the literal secret that it left out.
    import_config(exported, ENV)
    assert crypto.decrypt(MailServer.get(MailServer.name == "Backup relay").password_encrypted) == LITERAL_SECRET


def test_parent_may_be_an_organisation_already_in_the_database(database):
    import_config(BASE, ENV)
    import_config('[[organisations]]\nslug = "child"\nname = "Child"\nparent = "good"\n', ENV)
    child = Organisation.get(Organisation.slug == "child")
    assert child.parent.slug == "good"


# --------------------------------------------------------------------------- refusals


BAD_INPUTS = {
    "toml syntax": (
        '[[organisations]]\nslug = "x1"\nname = \n',
        ["line 3, column 8"],
    ),
    "unknown field with suggestion": (
        BASE.replace('base_dn = "dc=good,dc=test"', 'base_dn = "dc=good,dc=test"\n  bind_pasword = "x"'),
        ["organisations[0].directories[0].bind_pasword: unknown field (did you mean bind_password?)"],
    ),
    "unknown top-level section": (
        BASE + "\n[[organisation]]\nslug = \"zz\"\n",
        ["organisation: unknown field (did you mean organisations?)"],
    ),
    "string for an integer": (
        BASE.replace('host = "smtp.good.test"', 'host = "smtp.good.test"\n  port = "587"'),
        ["organisations[0].mail_servers[0].port: expected an integer, got a string '587'"],
    ),
    "yes for a boolean": (
        BASE.replace('base_dn = "dc=good,dc=test"', 'base_dn = "dc=good,dc=test"\n  nested_groups = "yes"'),
        ["organisations[0].directories[0].nested_groups: expected true or false, got a string 'yes'"],
    ),
    "true for an integer": (
        BASE.replace('base_dn = "dc=good,dc=test"', 'base_dn = "dc=good,dc=test"\n  connect_timeout = true'),
        ["organisations[0].directories[0].connect_timeout: expected an integer"],
    ),
    "list for a string": (
        BASE.replace('base_dn = "dc=good,dc=test"', 'base_dn = ["dc=good", "dc=test"]'),
        ["organisations[0].directories[0].base_dn: expected a string, got an array"],
    ),
    "string for a list": (
        BASE.replace('servers = ["ldap://ldap.good.test"]', 'servers = "ldap://ldap.good.test"'),
        ["organisations[0].directories[0].servers: expected an array of strings"],
    ),
    "bad url": (
        BASE.replace('servers = ["ldap://ldap.good.test"]', 'servers = ["ldap://ok.test", "htp://x"]'),
        ["organisations[0].directories[0].servers[1]: 'htp://x' is not an ldap:// or ldaps:// URL"],
    ),
    "empty server list": (
        BASE.replace('servers = ["ldap://ldap.good.test"]', "servers = []"),
        ["organisations[0].directories[0].servers: must list at least one value"],
    ),
    "bad port": (
        BASE.replace('host = "smtp.good.test"', 'host = "smtp.good.test"\n  port = 70000'),
        ["organisations[0].mail_servers[0].port: 70000 is out of range (1..65535)"],
    ),
    "timeout out of range": (
        BASE.replace('base_dn = "dc=good,dc=test"', 'base_dn = "dc=good,dc=test"\n  connect_timeout = 0'),
        ["organisations[0].directories[0].connect_timeout: 0 is out of range (1..60)"],
    ),
    "ldaps with an ldap url": (
        BASE.replace('base_dn = "dc=good,dc=test"', 'base_dn = "dc=good,dc=test"\n  tls_mode = "ldaps"'),
        ["organisations[0].directories[0].servers[0]: 'ldap://ldap.good.test': tls_mode \"ldaps\" needs ldaps://"],
    ),
    "unknown tls mode": (
        BASE.replace('base_dn = "dc=good,dc=test"', 'base_dn = "dc=good,dc=test"\n  tls_mode = "tls"'),
        ["organisations[0].directories[0].tls_mode: 'tls' is not one of none, starttls, ldaps"],
    ),
    "missing env var": (
        BASE.replace('base_dn = "dc=good,dc=test"', 'base_dn = "dc=good,dc=test"\n  bind_password = "env:NO_SUCH"'),
        ["organisations[0].directories[0].bind_password: environment variable NO_SUCH is not set"],
    ),
    "missing required field": (
        BASE.replace('  base_dn = "dc=good,dc=test"\n', ""),
        ["organisations[0].directories[0].base_dn: required field is missing"],
    ),
    "bad from address": (
        BASE.replace('from_address = "no-reply@good.test"', 'from_address = "Gatehouse <no-reply>"'),
        ["organisations[0].mail_servers[0].from_address: 'Gatehouse <no-reply>' is not an email address"],
    ),
    "url as mail host": (
        BASE.replace('host = "smtp.good.test"', 'host = "smtp://smtp.good.test"'),
        ["organisations[0].mail_servers[0].host: 'smtp://smtp.good.test' is not a host name"],
    ),
    "bad slug": (
        BASE.replace('slug = "good"', 'slug = "Good Org"'),
        ["organisations[0].slug: 'Good Org' must be 2 to 64 of a-z, 0-9 and -"],
    ),
    "duplicate slug": (
        BASE + '\n[[organisations]]\nslug = "good"\nname = "Again"\n',
        ["organisations[1].slug: 'good' is already used by organisations[0]"],
    ),
    "duplicate directory name": (
        BASE + '\n  [[organisations.directories]]\n  name = "LDAP"\n'
        '  servers = ["ldap://b.test"]\n  base_dn = "dc=b"\n',
        ["organisations[0].directories[1].name: 'LDAP' is already used by organisations[0].directories[0]"],
    ),
    "duplicate mail server name": (
        BASE + '\n  [[organisations.mail_servers]]\n  name = "Relay"\n  host = "b.test"\n  from_address = "a@b.test"\n',
        ["organisations[0].mail_servers[1].name: 'Relay' is already used by organisations[0].mail_servers[0]"],
    ),
    "parent cycle": (
        '[[organisations]]\nslug = "aa"\nname = "A"\nparent = "bb"\n'
        '[[organisations]]\nslug = "bb"\nname = "B"\nparent = "aa"\n',
        ["organisations[0].parent: 'bb' makes a cycle: aa → bb → aa"],
    ),
    "own parent": (
        '[[organisations]]\nslug = "aa"\nname = "A"\nparent = "aa"\n',
        ["organisations[0].parent: 'aa' makes a cycle: aa → aa"],
    ),
    "unknown parent": (
        BASE.replace('name = "Good Org"', 'name = "Good Org"\nparent = "nowhere"'),
        ["organisations[0].parent: no organisation 'nowhere' in the file or the database"],
    ),
    "single table instead of an array": (
        '[organisations]\nslug = "aa"\n',
        ["organisations: expected an array of tables ([[organisations]]), got a table"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_naming_the_field(database, case):
    import_config(FULL, ENV)  # existing rows must survive every refusal untouched
    text, expected = BAD_INPUTS[case]
    error = refused(text)
    for fragment in expected:
        assert any(fragment in line for line in error.errors), (fragment, error.errors)
        assert fragment in str(error)


def test_every_problem_is_reported_at_once(database):
    text = (
        BASE.replace('host = "smtp.good.test"', 'host = "smtp.good.test"\n  port = 0')
        .replace('servers = ["ldap://ldap.good.test"]', 'servers = ["htp://x"]')
        .replace('name = "Good Org"', 'name = "Good Org"\ncolour = "blue"')
    )
    error = refused(text)
    assert len(error.errors) == 3
    assert str(error).splitlines()[0] == "3 problems in the configuration file:"
    assert "organisations[0].colour: unknown field" in str(error)


def test_cycle_through_the_database_is_refused(database):
    import_config('[[organisations]]\nslug = "top"\nname = "Top"\n'
                  '[[organisations]]\nslug = "mid"\nname = "Mid"\nparent = "top"\n', ENV)
    error = refused('[[organisations]]\nslug = "top"\nname = "Top"\nparent = "mid"\n')
    assert error.errors == ["organisations[0].parent: 'mid' makes a cycle with the database: top → mid → top"]


def test_one_bad_directory_leaves_the_database_exactly_as_before(database):
    import_config(BASE, ENV)
    text = FULL.replace('servers = ["ldaps://ad.acme.test:636"]', 'servers = ["ldap://ad.acme.test"]')
    error = refused(text)
    assert error.errors == [
        "organisations[0].directories[1].servers[0]: "
        "'ldap://ad.acme.test': tls_mode \"ldaps\" needs ldaps:// URLs"
    ]
    assert Organisation.get_or_none(Organisation.slug == "acme") is None


def test_a_failure_while_writing_rolls_back_everything(database, monkeypatch):
    import_config(BASE, ENV)
    before = snapshot()
    real_upsert = configuration._upsert

    def failing_upsert(model, kind, organisation, entry, summary):
        """Fail on the last mail server, after everything else was written."""
        if model is MailServer and entry["name"] == "Backup relay":
            raise RuntimeError("disk on fire")
        return real_upsert(model, kind, organisation, entry, summary)

    monkeypatch.setattr(configuration, "_upsert", failing_upsert)
    changed = FULL + BASE.replace('name = "Good Org"', 'name = "Renamed"')
    with pytest.raises(RuntimeError):
        import_config(changed, ENV)
    assert snapshot() == before


def test_parse_returns_plain_data_with_positions_and_resolved_secrets():
    config = parse(FULL, ENV)
    acme = config["organisations"][0]
    assert [d["position"] for d in acme["directories"]] == [0, 1]
    assert acme["directories"][0]["bind_password"] == {
        "value": ENV["ACME_LDAP_PASSWORD"], "ref": "env:ACME_LDAP_PASSWORD"}
    assert "bind_password" not in acme["directories"][1]
    assert acme["mail_servers"][1]["password"] == {"value": LITERAL_SECRET, "ref": None}


# --------------------------------------------------------------------------- approval profiles and policies

# Inserted into FULL's "acme" organisation (before "holding"): two profiles, three policies.
APPROVALS = '''
  [[organisations.approval_profiles]]
  name = "Staff"
  kind = "user"
  server_url = "https://gatehouse.acme.example/"
  subject = "Your sign-in link for {organisation} — Zoë"
  message = """
Hello {user},

Sign in to {organisation}: {link}
Literal braces stay: {{ and }} and {{user}} — ça marche, Ångström.
"""
  link_lifetime_minutes = 30
  notify_manager_on_failure = true
  default = true
  mail_servers = ["Backup relay", "Relay"]
  directories = ["local", "Acme LDAP"]

  [[organisations.approval_profiles]]
  name = "Managers"
  kind = "manager"
  server_url = "https://gatehouse.acme.example"
  subject = "{user} asks to sign in"
  message = "Approve {user}: {link}\\nIt expires {expires}."
  link_lifetime_minutes = 20
  first_factor = "email_link"
  fallback_approver = "it@acme.example"
  mail_servers = ["Relay"]
  directories = ["Acme LDAP", "Acme AD"]

  [[organisations.policies]]
  name = "Finance approvers"
  profile = "Managers"
  directory = "Acme LDAP"
  attribute = "memberOf"
  values = ["cn=finance-approvers,ou=groups,dc=acme,dc=test", "re:^cn=fin.*"]

  [[organisations.policies]]
  profile = "Staff"
  directory = "local"
  attribute = "USERNAME"
  values = ["ann", "bob*"]
  enabled = false

  [[organisations.policies]]
  name = "AD finance"
  profile = "Managers"
  directory = "Acme AD"
  attribute = "department"
  values = ["Finance"]
'''
HOLDING = '\n[[organisations]]\nslug = "holding"'
FULL_APPROVALS = FULL.replace(HOLDING, APPROVALS + HOLDING)

# BASE with two profiles and one policy: what the approval refusals below are derived from.
STAFF = '''
  [[organisations.approval_profiles]]
  name = "Staff"
  server_url = "https://gatehouse.good.test"
  mail_servers = ["Relay"]
  directories = ["local", "LDAP"]
'''
MANAGERS = '''
  [[organisations.approval_profiles]]
  name = "Managers"
  kind = "manager"
  server_url = "https://gatehouse.good.test"
  mail_servers = ["Relay"]
  directories = ["LDAP"]
'''
FINANCE = '''
  [[organisations.policies]]
  name = "Finance"
  profile = "Managers"
  directory = "LDAP"
  attribute = "memberOf"
  values = ["cn=finance,ou=groups,dc=good,dc=test"]
'''
APPROVALS_BASE = BASE + STAFF + MANAGERS + FINANCE


def policy(name: str, profile: str = "Staff", directory: str = "local", values: str = '["x"]') -> str:
    return (f'\n  [[organisations.policies]]\n  name = "{name}"\n  profile = "{profile}"\n'
            f'  directory = "{directory}"\n  attribute = "username"\n  values = {values}\n')


def policy_rows(slug: str = "good") -> list[tuple]:
    org = Organisation.get(Organisation.slug == slug)
    query = Policy.select().where(Policy.organisation == org).order_by(Policy.position)
    return [(p.position, p.name, p.profile.name, p.directory.name if p.directory_id else "local", p.values)
            for p in query]


def default_name(slug: str = "good") -> str | None:
    profile = profiles.default_profile(Organisation.get(Organisation.slug == slug))
    return profile.name if profile else None


def test_full_import_creates_profiles_and_policies_with_the_right_values(database):
    summary = import_config(FULL_APPROVALS, ENV)

    assert summary.created == {"organisations": 2, "directories": 2, "mail_servers": 2,
                               "approval_profiles": 2, "policies": 3, "password_policies": 0, "mfa_policies": 0}
    assert "approval profiles: 2 created" in str(summary) and "policies: 3 created" in str(summary)
    acme = Organisation.get(Organisation.slug == "acme")
    staff = ApprovalProfile.get(ApprovalProfile.name == "Staff")
    assert staff.organisation_id == acme.id and staff.kind == "user" and staff.is_default
    assert staff.server_url == "https://gatehouse.acme.example"  # as the admin page stores it
    assert staff.subject == "Your sign-in link for {organisation} — Zoë"
    assert staff.message == ("Hello {user},\n\nSign in to {organisation}: {link}\n"
                             "Literal braces stay: {{ and }} and {{user}} — ça marche, Ångström.")
    assert (staff.link_lifetime_minutes, staff.notify_manager_on_failure) == (30, True)
    assert (staff.first_factor, staff.fallback_approver) == ("password", None)
    assert [m.name for m in profiles.mail_servers_of(staff)] == ["Backup relay", "Relay"]
    assert [d and d.name for d in profiles.directories_of(staff)] == [None, "Acme LDAP"]

    managers = ApprovalProfile.get(ApprovalProfile.name == "Managers")
    assert managers.kind == "manager" and not managers.is_default
    assert (managers.first_factor, managers.fallback_approver) == ("email_link", "it@acme.example")
    assert managers.notify_manager_on_failure is False
    assert [d.name for d in profiles.directories_of(managers)] == ["Acme LDAP", "Acme AD"]

    assert policy_rows("acme") == [
        (0, "Finance approvers", "Managers", "Acme LDAP",
         ["cn=finance-approvers,ou=groups,dc=acme,dc=test", "re:^cn=fin.*"]),
        (1, "", "Staff", "local", ["ann", "bob*"]),
        (2, "AD finance", "Managers", "Acme AD", ["Finance"]),
    ]
    second = Policy.get(Policy.position == 1)
    assert second.attribute == "username" and second.enabled is False  # canonical spelling, as the page
    assert Policy.get(Policy.position == 0).enabled is True
    # The services did the writing, so the audit log says who.
    actions = [(e.action, e.actor) for e in AuditEvent.select().order_by(AuditEvent.id)]
    assert ("profile.created", "configuration import") in actions
    assert ("policy.created", "configuration import") in actions


def test_profile_defaults_fill_what_the_file_leaves_out(database):
    import_config(APPROVALS_BASE, ENV)
    staff = ApprovalProfile.get(ApprovalProfile.name == "Staff")
    managers = ApprovalProfile.get(ApprovalProfile.name == "Managers")
    assert (staff.kind, staff.link_lifetime_minutes, staff.notify_manager_on_failure) == ("user", 15, False)
    assert (staff.subject, staff.message) == tuple(t.strip() for t in profiles.default_texts("user"))
    assert (managers.subject, managers.message) == tuple(t.strip() for t in profiles.default_texts("manager"))
    assert (managers.first_factor, managers.fallback_approver) == ("password", None)
    assert Policy.get().enabled is True


def test_round_trip_with_profiles_and_policies(database):
    import_config(FULL_APPROVALS, ENV)
    before = snapshot()
    exported = export_config()
    # Readable and faithful: a multi-line message is a """ string with its braces and accents.
    assert 'message = """\nHello {user},\n\nSign in to {organisation}: {link}\n' in exported
    assert "{{ and }} and {{user}} — ça marche, Ångström." in exported
    data = tomllib.loads(exported)
    acme = data["organisations"][0]
    assert [p["name"] for p in acme["approval_profiles"]] == ["Managers", "Staff"]
    assert [p.get("default") for p in acme["approval_profiles"]] == [None, True]
    assert "first_factor" not in acme["approval_profiles"][1]  # manager-only fields
    assert [p.get("name") for p in acme["policies"]] == ["Finance approvers", None, "AD finance"]
    assert acme["policies"][1]["directory"] == "local"
    assert acme["approval_profiles"][1]["directories"] == ["local", "Acme LDAP"]

    summary = import_config(exported, ENV)

    assert not summary.changed
    assert summary.unchanged == {"organisations": 2, "directories": 2, "mail_servers": 2,
                                 "approval_profiles": 2, "policies": 3, "password_policies": 0, "mfa_policies": 0}
    assert snapshot() == before  # ids, updated_at and the audit log alike
    assert export_config() == exported
    # The original file (trailing newline, "/" after the URL, USERNAME) is just as idempotent.
    assert not import_config(FULL_APPROVALS, ENV).changed
    assert snapshot() == before


def test_the_docstring_example_imports(database):
    doc = configuration.__doc__
    block = doc.split("::\n\n", 1)[1].split("\nRequired fields", 1)[0]
    text = "\n".join(line[4:] for line in block.splitlines())
    summary = import_config(text, ENV)
    assert summary.created["approval_profiles"] == 2 and summary.created["policies"] == 1
    exported = export_config()
    assert not import_config(exported, ENV).changed and export_config() == exported


def test_profiles_upsert_by_name_and_keep_their_ids(database):
    import_config(APPROVALS_BASE, ENV)
    staff = ApprovalProfile.get(ApprovalProfile.name == "Staff")
    text = (BASE + '\n  [[organisations.mail_servers]]\n  name = "Second"\n  host = "b.good.test"\n'
            '  from_address = "b@good.test"\n'
            + STAFF.replace('mail_servers = ["Relay"]', 'mail_servers = ["Second", "Relay"]\n  link_lifetime_minutes = 45')
            + MANAGERS + FINANCE)

    summary = import_config(text, ENV)

    assert summary.updated["approval_profiles"] == 1 and summary.unchanged["approval_profiles"] == 1
    assert summary.unchanged["policies"] == 1
    again = ApprovalProfile.get(ApprovalProfile.name == "Staff")
    assert again.id == staff.id and again.link_lifetime_minutes == 45
    assert [m.name for m in profiles.mail_servers_of(again)] == ["Second", "Relay"]
    assert ApprovalProfile.select().count() == 2


def test_profiles_left_out_of_the_file_are_kept(database):
    import_config(APPROVALS_BASE, ENV)
    import_config(BASE + MANAGERS, ENV)
    assert ApprovalProfile.select().count() == 2
    assert len(policy_rows()) == 1  # no policies key: the policies are untouched


def test_policies_list_replaces_the_old_one_in_file_order(database):
    import_config(APPROVALS_BASE, ENV)
    text = BASE + STAFF + MANAGERS + policy("Third") + FINANCE + policy("Last", "Managers", "LDAP", '["y", "z"]')

    summary = import_config(text, ENV)

    assert (summary.deleted["policies"], summary.created["policies"]) == (1, 3)
    assert "policies: 3 created, 0 updated, 0 unchanged, 1 deleted" in str(summary)
    assert policy_rows() == [
        (0, "Third", "Staff", "local", ["x"]),
        (1, "Finance", "Managers", "LDAP", ["cn=finance,ou=groups,dc=good,dc=test"]),
        (2, "Last", "Managers", "LDAP", ["y", "z"]),
    ]
    # A new order is a new list.
    import_config(BASE + STAFF + MANAGERS + policy("Last", "Managers", "LDAP", '["y", "z"]') + policy("Third"), ENV)
    assert [row[:2] for row in policy_rows()] == [(0, "Last"), (1, "Third")]
    # The same list again changes nothing, not even the ids.
    ids = [p.id for p in Policy.select().order_by(Policy.position)]
    assert not import_config(BASE + STAFF + MANAGERS + policy("Last", "Managers", "LDAP", '["y", "z"]')
                             + policy("Third"), ENV).changed
    assert [p.id for p in Policy.select().order_by(Policy.position)] == ids
    # No policies key: untouched. An empty list: none left.
    import_config(BASE + STAFF, ENV)
    assert len(policy_rows()) == 2
    import_config(BASE.replace('name = "Good Org"', 'name = "Good Org"\npolicies = []'), ENV)
    assert policy_rows() == []
    assert ApprovalProfile.select().count() == 2


def test_policies_of_other_organisations_are_left_alone(database):
    import_config(FULL_APPROVALS, ENV)
    import_config(APPROVALS_BASE.replace(FINANCE, ""), ENV)
    import_config(BASE.replace('name = "Good Org"', 'name = "Good Org"\npolicies = []'), ENV)
    assert len(policy_rows("acme")) == 3


def test_a_file_may_move_a_policy_and_a_profile_directory_together(database):
    import_config(APPROVALS_BASE, ENV)
    moved = STAFF.replace('directories = ["local", "LDAP"]', 'directories = ["local"]')
    # Without the policy change the profile service refuses: a policy still looks users up in LDAP.
    error = refused(BASE + moved + MANAGERS.replace('directories = ["LDAP"]', 'directories = ["local"]'))
    assert any(e.startswith("organisations[0].approval_profiles[1].directories: the policy Finance looks users up "
                            "in LDAP") for e in error.errors), error.errors
    # With it, the old policies go first and the new one is checked against the new directories.
    import_config(BASE + moved + MANAGERS.replace('directories = ["LDAP"]', 'directories = ["local"]')
                  + FINANCE.replace('directory = "LDAP"', 'directory = "local"').replace("memberOf", "username"), ENV)
    assert policy_rows()[0][3] == "local"


def test_first_profile_becomes_the_default_when_none_is_marked(database):
    import_config(APPROVALS_BASE, ENV)
    assert default_name() == "Staff"
    assert ApprovalProfile.select().where(ApprovalProfile.is_default).count() == 1


def test_default_true_moves_the_default_and_its_absence_keeps_it(database):
    import_config(APPROVALS_BASE, ENV)
    import_config(APPROVALS_BASE.replace('kind = "manager"', 'kind = "manager"\n  default = true'), ENV)
    assert default_name() == "Managers"
    assert ApprovalProfile.select().where(ApprovalProfile.is_default).count() == 1
    summary = import_config(APPROVALS_BASE, ENV)  # no profile says default = true: it stays
    assert not summary.changed and default_name() == "Managers"
    import_config(APPROVALS_BASE.replace('name = "Staff"', 'name = "Staff"\n  default = false'), ENV)
    assert default_name() == "Managers"


def test_a_marked_default_on_a_new_organisation_wins_over_the_first_profile(database):
    import_config(APPROVALS_BASE.replace('kind = "manager"', 'kind = "manager"\n  default = true'), ENV)
    assert default_name() == "Managers"
    assert ApprovalProfile.select().where(ApprovalProfile.is_default).count() == 1


def test_an_organisation_without_a_default_gets_the_first_profile_of_the_file(database):
    import_config(APPROVALS_BASE, ENV)
    ApprovalProfile.update(is_default=False).execute()
    import_config(BASE + MANAGERS + STAFF, ENV)
    assert default_name() == "Managers"


def _with(old: str, new: str, text: str = APPROVALS_BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


LIFETIME = 'directories = ["LDAP"]'  # the Managers profile, approval_profiles[1]
APPROVAL_BAD_INPUTS = {
    "lifetime out of range (profile service)": (
        _with(LIFETIME, LIFETIME + "\n  link_lifetime_minutes = 2"),
        ["organisations[0].approval_profiles[1].link_lifetime_minutes: at least 5 minutes"],
    ),
    "lifetime as a string": (
        _with(LIFETIME, LIFETIME + '\n  link_lifetime_minutes = "15"'),
        ["organisations[0].approval_profiles[1].link_lifetime_minutes: expected an integer, got a string '15'"],
    ),
    "notify as yes": (
        _with(LIFETIME, LIFETIME + '\n  notify_manager_on_failure = "yes"'),
        ["organisations[0].approval_profiles[1].notify_manager_on_failure: expected true or false"],
    ),
    "unknown profile field": (
        _with(LIFETIME, LIFETIME + '\n  mail_server = ["Relay"]'),
        ["organisations[0].approval_profiles[1].mail_server: unknown field (did you mean mail_servers?)"],
    ),
    "unknown policy field": (
        _with('attribute = "memberOf"', 'attribute = "memberOf"\n  value = ["x"]'),
        ["organisations[0].policies[0].value: unknown field (did you mean values?)"],
    ),
    "unknown kind": (
        _with('kind = "manager"', 'kind = "boss"'),
        ["organisations[0].approval_profiles[1].kind: 'boss' is not one of user, manager"],
    ),
    "unknown first factor": (
        _with('kind = "manager"', 'kind = "manager"\n  first_factor = "sms"'),
        ["organisations[0].approval_profiles[1].first_factor: 'sms' is not one of password, email_link, none"],
    ),
    "manager-only field on a user profile": (
        _with('name = "Staff"', 'name = "Staff"\n  fallback_approver = "it@good.test"'),
        ["organisations[0].approval_profiles[0].fallback_approver: only a manager-approval profile"],
    ),
    "bad fallback approver (profile service)": (
        _with('kind = "manager"', 'kind = "manager"\n  fallback_approver = "not-an-address"'),
        ["organisations[0].approval_profiles[1].fallback_approver: enter one email address"],
    ),
    "message without a link (profile service)": (
        _with('name = "Staff"', 'name = "Staff"\n  message = """\nHello {user}, {{ok}}\n"""'),
        ["organisations[0].approval_profiles[0].message: the message must contain {link}"],
    ),
    "unknown placeholder": (
        _with('name = "Staff"', 'name = "Staff"\n  subject = "Hi {name}"'),
        ["organisations[0].approval_profiles[0].subject: unknown placeholder {name}"],
    ),
    "bad server url (profile service)": (
        _with('server_url = "https://gatehouse.good.test"', 'server_url = "ftp://gatehouse.good.test"'),
        ["organisations[0].approval_profiles[0].server_url: enter the address people open Gatehouse at"],
    ),
    "missing server url": (
        _with('  server_url = "https://gatehouse.good.test"\n', ""),
        ["organisations[0].approval_profiles[0].server_url: required field is missing"],
    ),
    "unknown mail server": (
        _with('mail_servers = ["Relay"]', 'mail_servers = ["Relay", "Nope"]'),
        ["organisations[0].approval_profiles[0].mail_servers[1]: no mail server 'Nope' in this organisation"],
    ),
    "mail server of another organisation": (
        _with('mail_servers = ["Relay"]', 'mail_servers = ["Backup relay"]'),
        ["organisations[0].approval_profiles[0].mail_servers[0]: no mail server 'Backup relay'"],
    ),
    "no mail server (profile service)": (
        _with('mail_servers = ["Relay"]', "mail_servers = []"),
        ["organisations[0].approval_profiles[0].mail_servers: choose at least one mail server"],
    ),
    "repeated directory": (
        _with('directories = ["local", "LDAP"]', 'directories = ["local", "LDAP", "local"]'),
        ["organisations[0].approval_profiles[0].directories[2]: 'local' is already listed"],
    ),
    "unknown profile directory": (
        _with('directories = ["local", "LDAP"]', 'directories = ["local", "AD"]'),
        ["organisations[0].approval_profiles[0].directories[1]: no directory 'AD' in this organisation"],
    ),
    "directories as a string": (
        _with('directories = ["local", "LDAP"]', 'directories = "local"'),
        ["organisations[0].approval_profiles[0].directories: expected an array of directory names"],
    ),
    "two defaults": (
        _with('name = "Staff"', 'name = "Staff"\n  default = true').replace(
            'kind = "manager"', 'kind = "manager"\n  default = true'),
        [("organisations[0].approval_profiles[1].default: only one profile can be the default, and "
          "organisations[0].approval_profiles[0] already says default = true")],
    ),
    "duplicate profile name": (
        _with('name = "Managers"', 'name = "Staff"'),
        ["organisations[0].approval_profiles[1].name: 'Staff' is already used by organisations[0].approval_profiles[0]"],
    ),
    "bad regular expression": (
        _with('values = ["cn=finance,ou=groups,dc=good,dc=test"]', 'values = ["re:(", "ok"]'),
        ["organisations[0].policies[0].values[0]: not a valid regular expression"],
    ),
    "slow regular expression": (
        _with('values = ["cn=finance,ou=groups,dc=good,dc=test"]', 'values = ["ok", "re:(a+)+"]'),
        ["organisations[0].policies[0].values[1]: the regular expression repeats a group"],
    ),
    "values as a string": (
        _with('values = ["cn=finance,ou=groups,dc=good,dc=test"]', 'values = "x"'),
        ["organisations[0].policies[0].values: expected an array of strings, got a string 'x'"],
    ),
    "no values (policy service)": (
        _with('values = ["cn=finance,ou=groups,dc=good,dc=test"]', "values = []"),
        ["organisations[0].policies[0].values: enter at least one value"],
    ),
    "bad attribute (policy service)": (
        _with('attribute = "memberOf"', 'attribute = "member of"'),
        ["organisations[0].policies[0].attribute: 'member of' is not an attribute name"],
    ),
    "unknown policy profile": (
        _with('profile = "Managers"', 'profile = "Nobody"'),
        ["organisations[0].policies[0].profile: no approval profile 'Nobody' in this organisation"],
    ),
    "unknown policy directory": (
        _with('directory = "LDAP"', 'directory = "AD"'),
        ["organisations[0].policies[0].directory: no directory 'AD' in this organisation"],
    ),
    "directory not among the profile's (policy service)": (
        _with('directory = "LDAP"', 'directory = "local"'),
        [("organisations[0].policies[0].directory: Local accounts is not one of the fallback directories of "
          "the approval profile Managers")],
    ),
    "missing policy profile": (
        _with('  profile = "Managers"\n', ""),
        ["organisations[0].policies[0].profile: required field is missing"],
    ),
    "enabled as a string": (
        _with('attribute = "memberOf"', 'attribute = "memberOf"\n  enabled = "no"'),
        ["organisations[0].policies[0].enabled: expected true or false"],
    ),
    "policy name too long (policy service)": (
        _with('name = "Finance"', f'name = "{"F" * 101}"'),
        ["organisations[0].policies[0].name: use at most 100 characters"],
    ),
    "policies as a single table": (
        BASE.replace('name = "Good Org"', 'name = "Good Org"\npolicies = {name = "x"}'),
        ["organisations[0].policies: expected an array of tables ([[organisations.policies]]), got a table"],
    ),
}


@pytest.mark.parametrize("case", list(APPROVAL_BAD_INPUTS))
def test_bad_approval_input_is_refused_naming_the_field(database, case):
    import_config(FULL_APPROVALS, ENV)  # existing profiles and policies must survive every refusal
    text, expected = APPROVAL_BAD_INPUTS[case]
    error = refused(text)
    for fragment in expected:
        assert any(line.startswith(fragment) for line in error.errors), (fragment, error.errors)


def test_a_bad_policy_after_good_profile_changes_leaves_the_database_exactly_as_before(database):
    import_config(APPROVALS_BASE, ENV)
    text = (BASE + STAFF.replace('directories = ["local", "LDAP"]', 'directories = ["LDAP", "local"]')
            + MANAGERS.replace('kind = "manager"', 'kind = "manager"\n  default = true\n  link_lifetime_minutes = 60')
            + '\n  [[organisations.approval_profiles]]\n  name = "New"\n  server_url = "https://n.good.test"\n'
              '  mail_servers = ["Relay"]\n  directories = ["local"]\n'
            + policy("Fine") + FINANCE.replace('values = ["cn=finance,ou=groups,dc=good,dc=test"]', 'values = ["re:[z-a]"]'))

    error = refused(text)  # the old policy was deleted and three profiles written before this

    assert error.errors == [("organisations[0].policies[1].values[0]: not a valid regular expression: "
                             "bad character range z-a at position 1")]
    assert default_name() == "Staff" and ApprovalProfile.select().count() == 2


def test_every_approval_problem_is_reported_at_once(database):
    text = (_with('mail_servers = ["Relay"]', 'mail_servers = ["Nope"]')
            .replace('kind = "manager"', 'kind = "manager"\n  link_lifetime_minutes = 9999')
            .replace('profile = "Managers"', 'profile = "Nobody"'))
    error = refused(text)
    assert [line.split(":")[0] for line in error.errors] == [
        "organisations[0].approval_profiles[0].mail_servers[0]",
        "organisations[0].approval_profiles[1].link_lifetime_minutes",
        "organisations[0].policies[0].profile",
    ]


def test_a_policy_of_a_refused_profile_is_not_checked_against_its_old_state(database):
    import_config(APPROVALS_BASE, ENV)
    text = (BASE + STAFF + MANAGERS.replace('directories = ["LDAP"]', 'directories = ["local"]\n  subject = "{x}"')
            + FINANCE.replace('directory = "LDAP"', 'directory = "local"').replace("memberOf", "username"))
    error = refused(text)
    assert [line.split(":")[0] for line in error.errors] == ["organisations[0].approval_profiles[1].subject"]


def test_parse_keeps_policies_none_without_the_key():
    assert parse(APPROVALS_BASE, ENV)["organisations"][0]["policies"][0]["attribute"] == "memberOf"
    assert parse(BASE + STAFF, ENV)["organisations"][0]["policies"] is None
    empty = parse(BASE.replace('name = "Good Org"', 'name = "Good Org"\npolicies = []'), ENV)
    assert empty["organisations"][0]["policies"] == []


# --------------------------------------------------------------------------- password policy

PASSWORD_POLICY = """
[[organisations]]
slug = "acme"
name = "Acme"

  [organisations.password_policy]
  strength = "advanced"
  expiry_days = 90
  history_count = 5
  lockout_threshold = 4
  lockout_minutes = 30
"""


def test_password_policy_is_imported_and_audited(database):
    summary = import_config(PASSWORD_POLICY, ENV)

    assert summary.created["password_policies"] == 1
    policy = PasswordPolicy.get(PasswordPolicy.organisation == Organisation.get(Organisation.slug == "acme"))
    assert (policy.strength, policy.expiry_days, policy.history_count, policy.lockout_threshold,
            policy.lockout_minutes) == ("advanced", 90, 5, 4, 30)
    assert AuditEvent.select().where(AuditEvent.action == "password_policy.updated").count() == 1


def test_password_policy_round_trip_changes_nothing(database):
    import_config(PASSWORD_POLICY, ENV)
    exported = export_config()
    assert tomllib.loads(exported)["organisations"][0]["password_policy"] == {
        "strength": "advanced", "expiry_days": 90, "history_count": 5, "lockout_threshold": 4, "lockout_minutes": 30}
    before = snapshot()
    audits = AuditEvent.select().count()

    summary = import_config(exported, ENV)

    assert not summary.changed and summary.unchanged["password_policies"] == 1
    assert snapshot() == before and AuditEvent.select().count() == audits
    assert export_config() == exported


def test_password_policy_defaults_and_never_expiring(database):
    import_config(PASSWORD_POLICY, ENV)
    summary = import_config('''
[[organisations]]
slug = "acme"
name = "Acme"

  [organisations.password_policy]
  expiry_days = 0
''', ENV)

    assert summary.updated["password_policies"] == 1
    policy = PasswordPolicy.get()
    assert (policy.strength, policy.expiry_days, policy.history_count, policy.lockout_threshold,
            policy.lockout_minutes) == ("nist", None, 0, 10, 15)
    assert "expiry_days = 0" in export_config()
    again = import_config(export_config(), ENV)
    assert again.unchanged["password_policies"] == 1 and PasswordPolicy.get().expiry_days is None


def test_without_the_table_the_password_policy_is_left_alone(database):
    import_config(PASSWORD_POLICY, ENV)
    summary = import_config('[[organisations]]\nslug = "acme"\nname = "Acme"\n', ENV)

    assert summary.unchanged["password_policies"] == 0 and not summary.changed
    assert PasswordPolicy.get().lockout_threshold == 4


def test_an_organisation_without_a_password_policy_exports_none(database):
    import_config('[[organisations]]\nslug = "acme"\nname = "Acme"\n', ENV)
    assert "password_policy" not in export_config()


def test_password_policy_errors_are_reported_with_their_paths(database):
    error = refused('''
[[organisations]]
slug = "acme"
name = "Acme"

  [organisations.password_policy]
  strength = "strong"
  expiry_days = 4000
  history_count = -1
  lockout_threshold = 2
  lockout_minutes = true
  lockout = 5
''')

    text = "\n".join(error.errors)
    for field in ("strength", "expiry_days", "history_count", "lockout_threshold", "lockout_minutes", "lockout"):
        assert f"organisations[0].password_policy.{field}:" in text, text
    assert "'strong' is not one of basic, medium, advanced, nist" in text
    assert PasswordPolicy.select().count() == 0 and Organisation.select().count() == 0


def test_password_policy_must_be_a_table(database):
    error = refused('[[organisations]]\nslug = "acme"\nname = "Acme"\npassword_policy = 5\n')
    assert any(e.startswith("organisations[0].password_policy: expected a table") for e in error.errors)


# --------------------------------------------------------------------------- two-factor enforcement

MFA_POLICY = """
[[organisations]]
slug = "acme"
name = "Acme"

  [organisations.mfa_policy]
  mode = "all_except"
  accounts = ["breakglass"]
"""


def _acme_with_breakglass():
    import_config(ORG_ONLY, ENV)
    from services.accounts import create_local

    return create_local(Organisation.get(Organisation.slug == "acme"), "breakglass", "bg@acme.test")


ORG_ONLY = """
[[organisations]]
slug = "acme"
name = "Acme"
"""


def test_mfa_policy_is_imported_audited_and_round_trips(database):
    breakglass = _acme_with_breakglass()
    summary = import_config(MFA_POLICY, ENV)
    assert summary.created["mfa_policies"] == 1
    policy = MfaPolicy.get(MfaPolicy.organisation == breakglass.organisation)
    assert policy.mode == "all_except"
    assert [row.account_id for row in MfaPolicyAccount.select()] == [breakglass.id]
    assert AuditEvent.select().where(AuditEvent.action == "mfa_policy.changed").count() == 1

    exported = export_config()
    assert tomllib.loads(exported)["organisations"][0]["mfa_policy"] == {"mode": "all_except", "accounts": ["breakglass"]}
    audits = AuditEvent.select().count()
    summary = import_config(exported, ENV)
    assert not summary.changed and summary.unchanged["mfa_policies"] == 1
    assert AuditEvent.select().count() == audits


def test_mfa_policy_naming_an_unknown_account_changes_nothing(database):
    _acme_with_breakglass()
    with pytest.raises(ConfigFileError) as caught:
        import_config(MFA_POLICY.replace('"breakglass"', '"breakglass", "nobody"'), ENV)
    assert "organisations[0].mfa_policy.accounts: no account 'nobody' in acme" in str(caught.value)
    assert MfaPolicy.select().count() == 0


@pytest.mark.parametrize("table, message", [
    ('mode = "sometimes"', "'sometimes' is not one of off, all, selected, all_except"),
    ('mode = "all"\n  accounts = ["ann"]', 'only mode "selected" or "all_except" lists accounts'),
    ('mode = "selected"\n  accounts = "ann"', "expected an array of strings"),
    ('mode = "off"\n  people = []', "people"),
])
def test_mfa_policy_bad_values_are_named(database, table, message):
    text = ORG_ONLY + "\n  [organisations.mfa_policy]\n  " + table + "\n"
    with pytest.raises(ConfigFileError) as caught:
        parse(text, ENV)
    assert message in str(caught.value)
