"""Configuration as code (services.configuration) on SQLite and PostgreSQL.

Each test gets an empty migrated database from the shared ``database`` fixture
(tests/support/database.py): a SQLite file, then PostgreSQL when it is reachable.
"""

from __future__ import annotations

import tomllib

import pytest

from models import ALL_MODELS, Directory, MailServer, Organisation
from services import configuration, crypto
from services.configuration import ConfigFileError, export_config, import_config, parse

ENV = {"ACME_LDAP_PASSWORD": "ldap-bind-secret-1", "SMTP_PASSWORD": "smtp-secret-2"}
LITERAL_SECRET = "literal-mail-secret-3"

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

    assert summary.created == {"organisations": 2, "directories": 2, "mail_servers": 2}
    assert summary.updated == {"organisations": 0, "directories": 0, "mail_servers": 0}
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
    assert summary.unchanged == {"organisations": 2, "directories": 2, "mail_servers": 2}
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

    assert summary.created == {"organisations": 0, "directories": 0, "mail_servers": 0}
    assert summary.updated == {"organisations": 1, "directories": 1, "mail_servers": 1}
    assert summary.unchanged == {"organisations": 1, "directories": 1, "mail_servers": 1}
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
