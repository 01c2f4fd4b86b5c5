"""Configuration as code: organisations, directories, mail servers, approval profiles and
policies as TOML.

``flask config import FILE.toml`` and ``flask config export`` (DESIGN.md §6) sit on top of
this module, so an installation can be rebuilt from, or reviewed in, git.

The file format
===============

::

    [[organisations]]
    slug = "holding"
    name = "Holding Group"

    [[organisations]]
    slug = "acme"            # [a-z0-9-]{2,64}, the Account ID typed on the SSO page
    name = "Acme Corporation"
    parent = "holding"       # optional: slug of another organisation, in the file or the database

      [[organisations.directories]]
      name = "Acme LDAP"                         # unique within the organisation
      servers = ["ldap://127.0.0.1:3389"]        # non-empty, ldap:// or ldaps://, tried in order
      tls_mode = "none"                          # none | starttls | ldaps (ldaps <=> ldaps:// URLs)
      ca_file = "/etc/ssl/certs/acme-ca.pem"     # optional
      verify_certificate = true
      bind_dn = "cn=gatehouse,ou=services,dc=acme,dc=test"
      bind_password = "env:ACME_LDAP_PASSWORD"   # or a literal; env:NAME is read at import
      base_dn = "dc=acme,dc=test"
      login_attributes = ["uid", "mail"]
      mail_attribute = "mail"
      manager_attribute = "manager"
      group_attribute = "memberOf"
      nested_groups = false
      connect_timeout = 5                        # seconds, 1..60
      receive_timeout = 10                       # seconds, 1..300

      [[organisations.mail_servers]]
      name = "Relay"                             # unique within the organisation
      host = "smtp.acme.test"
      port = 587                                 # 1..65535
      security = "starttls"                      # none | starttls | ssl
      username = "gatehouse"
      password = "env:SMTP_PASSWORD"
      from_address = "Gatehouse <no-reply@acme.test>"
      verify_certificate = true
      ca_file = "/etc/ssl/certs/acme-ca.pem"     # optional
      timeout = 10                               # seconds, 1..300

      [organisations.password_policy]            # optional; one per organisation
      strength = "nist"                          # basic | medium | advanced | nist
      expiry_days = 90                           # 0..3650; 0 or absent: passwords never expire
      history_count = 5                          # 0..24 earlier passwords that may not be reused
      lockout_threshold = 10                     # 3..100 failed attempts (passwords, TOTP codes)
      lockout_minutes = 15                       # 1..1440

      [organisations.mfa_policy]                 # optional; two-factor enforcement
      mode = "all"                               # off | all | selected | all_except
      # accounts = ["breakglass"]                # with selected / all_except: usernames of existing accounts

      [[organisations.approval_profiles]]
      name = "Staff"                             # unique within the organisation
      kind = "user"                              # user | manager
      server_url = "https://gatehouse.acme.example"  # links in the emails are built from it
      subject = "Your sign-in link for {organisation}"
      message = \"\"\"
    Hello {user},

    Sign in: {link}  (works until {expires}; write {{ and }} for literal braces)\"\"\"
      link_lifetime_minutes = 15
      notify_manager_on_failure = false
      default = true                             # the profile used when no policy matches
      mail_servers = ["Relay"]                   # this organisation's mail servers, tried in order
      directories = ["local", "Acme LDAP"]       # "local" = local accounts; searched in order

      [[organisations.approval_profiles]]
      name = "Managers"
      kind = "manager"
      server_url = "https://gatehouse.acme.example"
      first_factor = "password"                  # manager only: password | email_link | none
      fallback_approver = "it@acme.example"      # manager only, optional
      mail_servers = ["Relay"]
      directories = ["Acme LDAP"]

      [[organisations.policies]]                 # ordered: the first match wins
      name = "Finance approvers"                 # optional
      profile = "Managers"                       # an approval profile of this organisation
      directory = "Acme LDAP"                    # or "local"; one of the profile's directories
      attribute = "memberOf"                     # memberOf, department, mail, username, group_name, ...
      values = ["cn=finance-approvers,ou=groups,dc=acme,dc=test", "re:^cn=fin.*"]
      enabled = true

Required fields: ``slug`` and ``name`` of an organisation; ``name``, ``servers`` and
``base_dn`` of a directory; ``name``, ``host`` and ``from_address`` of a mail server.
Every other field has the default shown above (``tls_mode = "none"``, ``bind_dn = ""``,
``login_attributes = ["uid"]``, ``port = 587``, ``security = "starttls"``,
``username = ""``) and an absent optional field (``parent``, ``ca_file``) means "none".
An approval profile needs ``name``, ``server_url``, ``mail_servers`` and ``directories``;
``kind`` defaults to ``"user"``, ``subject`` and ``message`` to the suggested texts of
its kind (``services.profiles.default_texts``), ``link_lifetime_minutes`` to 15,
``notify_manager_on_failure`` and ``default`` to false, ``first_factor`` to
``"password"``. A policy needs ``profile``, ``directory``, ``attribute`` and ``values``;
``name`` defaults to ``""`` and ``enabled`` to true.

Rules
=====

* Unknown keys, wrong types (``"5"`` for 5, ``"yes"`` for true, a list for a string) and
  out-of-range values are errors; every problem in the file is reported at once, each
  prefixed with its field path, e.g. ``organisations[0].directories[1].servers[0]``.
* ``tls_mode = "ldaps"`` needs ldaps:// URLs, and ldaps:// URLs need ``tls_mode = "ldaps"``
  (the directory service derives implicit TLS from the URL and the TLS setup from the mode).
* The order of directories and of mail servers in the file is their ``position``.
* Secrets (``bind_password``, ``password``): ``"env:NAME"`` reads the environment variable
  NAME at import (an unset variable is an error) and remembers the reference; any other
  string is a literal secret; ``""`` removes the stored secret; a secret key left out of
  the file keeps whatever secret is stored. Secrets are always stored encrypted. A literal
  secret can therefore never start with ``env:``.
* Import is an upsert by natural key (organisation ``slug``; directory and mail server
  ``name`` within their organisation) in one transaction: the whole file is applied or
  nothing is. It never deletes anything: organisations, directories and mail servers
  absent from the file are left as they are. Fields of a declared object that are absent
  from the file (secrets excepted) are reset to their defaults, so the file is the truth
  for what it declares.
* Approval profiles and policies are checked by the very services the admin pages use
  (``services.profiles.check`` / ``save``, ``services.policy.save_policy``,
  ``validate_pattern``, ``canonical_attribute``), whose messages are reported under the
  field path, e.g. ``organisations[0].approval_profiles[1].link_lifetime_minutes`` or
  ``organisations[0].policies[2].values[0]``. Names that do not resolve (a mail server,
  directory or approval profile that is neither in the file nor in the database for
  that organisation) are errors too. ``"local"`` always means local accounts, in
  ``directories`` of a profile and in ``directory`` of a policy.
* ``first_factor`` and ``fallback_approver`` exist only for ``kind = "manager"``; in a
  user profile they are an error rather than silently ignored.
* Approval profiles are upserted by ``name`` within their organisation, like directories,
  and never deleted. ``default = true`` makes a profile the organisation's default (at
  most one per organisation in the file); ``default = false`` or no ``default`` leaves
  the current default where it is (mark another profile to move it). When the
  organisation has no default profile, the first profile of the file becomes it.
* Policies are an ordered list, so they are not upserted: when an organisation table has
  a ``policies`` key, that list *replaces* the organisation's policies, in the file's
  order (``policies = []``, written before the organisation's ``[[...]]`` sub-tables,
  removes them all). Without the key the policies are left untouched. An identical list
  changes nothing; a different one deletes the old policies and creates the new ones.
  Profiles are saved after the old policies are removed and before the new ones are
  created, so a file may move a policy and a profile directory together.
* ``[organisations.password_policy]`` is stored through
  ``services.password_policy.save`` (audited) with the admin page's limits; fields it
  leaves out get the defaults (``"nist"``, never expires, no history, 10 attempts, 15
  minutes). Without the table the organisation's policy is left as it is; the export
  writes it only for organisations that have one, ``expiry_days = 0`` meaning never.
* ``[organisations.mfa_policy]`` is stored through ``services.mfa_policy.save``
  (audited). ``accounts`` names existing accounts of the organisation by username
  (accounts themselves are not part of the file); it is only allowed with ``selected``
  and ``all_except``. Without the table the organisation's enforcement is left as it is;
  the export writes it for organisations that have one.
* Export writes every organisation, directory, mail server, approval profile (sorted by
  name, ``default = true`` on the default one, multi-line messages as ``\"\"\"`` strings)
  and policy (in order), and never a plaintext secret: a secret imported from
  ``env:NAME`` is exported as that reference; a literal secret is left out, so
  re-importing the export keeps it in the database. Importing an export changes nothing.
"""

from __future__ import annotations

import difflib
import email.utils
import os
import re
import tomllib
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import tomli_w

from models import (
    FIRST_FACTORS,
    MFA_MODES,
    PROFILE_KINDS,
    SMTP_SECURITY,
    STRENGTH_PRESETS,
    TLS_MODES,
    Account,
    ApprovalProfile,
    Directory,
    MailServer,
    MfaPolicy,
    Organisation,
    PasswordPolicy,
    db,
    is_postgres,
    utcnow,
)

from . import crypto
from . import mfa_policy as mfa_policy_service
from . import password_policy as password_policy_service
from . import policy as policy_service
from . import profiles as profile_service

KINDS = ("organisations", "directories", "mail_servers", "approval_profiles", "policies", "password_policies",
         "mfa_policies")
LOCAL = "local"  # in a profile's directories or a policy's directory: the local accounts
ACTOR = "configuration import"  # who the audit log names for profile and policy changes

SLUG_RE = re.compile(r"[a-z0-9-]{2,64}")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# An LDAP attribute descriptor (with options such as ;binary) or a dotted OID.
_ATTRIBUTE_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*(;[A-Za-z0-9-]+)*|[0-9]+(\.[0-9]+)+")
# Host names, IPv4 and bare IPv6 addresses; "/" is excluded so a URL is refused.
_HOST_RE = re.compile(r"[A-Za-z0-9._:-]+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_PG_LOCK_ID = 0x6A6366  # arbitrary constant: "configuration import" advisory lock
_REF_MAX = 128  # the *_ref column width


class ConfigFileError(Exception):
    """The configuration file is not acceptable; ``errors`` lists every problem found."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        count = len(self.errors)
        head = f"{count} problem{'s' if count != 1 else ''} in the configuration file:"
        super().__init__("\n".join([head, *(f"  {e}" for e in self.errors)]))


@dataclass
class ImportSummary:
    """How many objects of each kind an import created, updated, found unchanged or
    deleted (only policies are ever deleted: a new ``policies`` list replaces the old)."""

    created: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    updated: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    unchanged: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    deleted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    @property
    def changed(self) -> bool:
        """True when the import wrote anything."""
        return any(self.created.values()) or any(self.updated.values()) or any(self.deleted.values())

    def __str__(self) -> str:
        return "; ".join(
            f"{kind.replace('_', ' ')}: {self.created[kind]} created, {self.updated[kind]} updated, "
            f"{self.unchanged[kind]} unchanged" + (f", {self.deleted[kind]} deleted" if self.deleted[kind] else "")
            for kind in KINDS
        )


# --------------------------------------------------------------------------- validation

_MISSING = object()
_INVALID = object()


def _describe(value) -> str:
    if isinstance(value, bool):
        kind = "a boolean"
    elif isinstance(value, int):
        kind = "an integer"
    elif isinstance(value, float):
        kind = "a float"
    elif isinstance(value, str):
        kind = "a string"
    elif isinstance(value, list):
        kind = "an array"
    elif isinstance(value, Mapping):
        return "a table"
    else:
        kind = "a date/time"
    shown = repr(value)
    # Long values (a whole array) would drown the message.
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{kind} {shown}"


class _Checker:
    """Collects errors while checking values; each check returns the value or _INVALID."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ
        self.errors: list[str] = []

    def fail(self, path: str, message: str):
        """Record a problem at ``path``; returns _INVALID so checks can ``return self.fail(...)``."""
        self.errors.append(f"{path}: {message}")
        return _INVALID

    def string(self, path, value, *, max_length, allow_empty=False):
        """A single-line string no longer than ``max_length``."""
        if not isinstance(value, str):
            return self.fail(path, f"expected a string, got {_describe(value)}")
        if not allow_empty and not value.strip():
            return self.fail(path, "must not be empty")
        if len(value) > max_length:
            return self.fail(path, f"is longer than {max_length} characters")
        # Values end up in LDAP filters, SMTP headers and log lines: no line breaks.
        if _CONTROL_RE.search(value):
            return self.fail(path, "contains a control character (line break, tab, ...)")
        return value

    def optional_string(self, path, value, *, max_length):
        """Like ``string``, with ``""`` meaning none (None)."""
        if isinstance(value, str) and value == "":
            return None
        return self.string(path, value, max_length=max_length)

    def text(self, path, value):
        """Any string, line breaks included: the service that stores it judges the content."""
        if not isinstance(value, str):
            return self.fail(path, f"expected a string, got {_describe(value)}")
        return value

    def whole_number(self, path, value):
        """Any integer (booleans refused): the service that stores it judges the range."""
        if isinstance(value, bool) or not isinstance(value, int):
            return self.fail(path, f"expected an integer, got {_describe(value)}")
        return value

    def integer(self, path, value, *, low, high):
        """An integer in ``low..high`` (booleans refused)."""
        # bool is a subclass of int in Python, but `true` is not a number in the file.
        if isinstance(value, bool) or not isinstance(value, int):
            return self.fail(path, f"expected an integer, got {_describe(value)}")
        if not low <= value <= high:
            return self.fail(path, f"{value} is out of range ({low}..{high})")
        return value

    def boolean(self, path, value):
        """``true`` or ``false``, nothing else."""
        if not isinstance(value, bool):
            return self.fail(path, f"expected true or false, got {_describe(value)}")
        return value

    def choice(self, path, value, choices):
        """One of ``choices``."""
        if self.string(path, value, max_length=16) is _INVALID:
            return _INVALID
        if value not in choices:
            return self.fail(path, f"{value!r} is not one of {', '.join(choices)}")
        return value

    def string_list(self, path, value, item, *, allow_empty_list=False):
        """An array whose elements each pass ``item``, without repeats."""
        if not isinstance(value, list):
            return self.fail(path, f"expected an array of strings, got {_describe(value)}")
        if not value and not allow_empty_list:
            return self.fail(path, "must list at least one value")
        result, seen, ok = [], {}, True
        for index, element in enumerate(value):
            checked = item(f"{path}[{index}]", element)
            if checked is _INVALID:
                ok = False
                continue
            if checked in seen:
                self.fail(f"{path}[{index}]", f"{checked!r} is already listed at {path}[{seen[checked]}]")
                ok = False
                continue
            seen[checked] = index
            result.append(checked)
        return result if ok else _INVALID

    def ldap_url(self, path, value):
        """An ldap:// or ldaps:// URL with a host and at most a port."""
        if self.string(path, value, max_length=1024) is _INVALID:
            return _INVALID
        try:
            parts = urlsplit(value)
            port = parts.port  # raises ValueError when out of range or not a number
        except ValueError:
            return self.fail(path, f"{value!r} is not an ldap:// or ldaps:// URL (bad host or port)")
        if (
            parts.scheme.lower() not in ("ldap", "ldaps")
            or not value.lower().startswith(("ldap://", "ldaps://"))
            or not parts.hostname
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or " " in value
        ):
            return self.fail(path, f"{value!r} is not an ldap:// or ldaps:// URL")
        if port == 0:
            return self.fail(path, f"{value!r} is not an ldap:// or ldaps:// URL (port 0)")
        return value

    def attribute(self, path, value):
        """An LDAP attribute name or OID."""
        if self.string(path, value, max_length=64) is _INVALID:
            return _INVALID
        if not _ATTRIBUTE_RE.fullmatch(value):
            return self.fail(path, f"{value!r} is not an LDAP attribute name")
        return value

    def host(self, path, value):
        """A host name or IP address, not a URL."""
        if self.string(path, value, max_length=255) is _INVALID:
            return _INVALID
        if not _HOST_RE.fullmatch(value):
            return self.fail(path, f"{value!r} is not a host name or IP address (give the port separately)")
        return value

    def mail_address(self, path, value):
        """An address with an @, bare or as ``Name <address>``."""
        if self.string(path, value, max_length=320) is _INVALID:
            return _INVALID
        _, address = email.utils.parseaddr(value)
        local, at, domain = address.rpartition("@")
        if not at or not local or not domain or " " in address:
            return self.fail(path, f"{value!r} is not an email address (expected name@domain or Name <name@domain>)")
        return value

    def secret(self, path, value):
        """A parsed secret: {"value": plaintext ('' clears), "ref": "env:NAME" or None}."""
        if not isinstance(value, str):
            return self.fail(path, f"expected a string (a secret or env:NAME), got {_describe(value)}")
        if not value.startswith("env:"):
            return {"value": value, "ref": None}
        name = value[len("env:"):]
        if not _ENV_NAME_RE.fullmatch(name) or len(value) > _REF_MAX:
            return self.fail(path, f"{value!r} is not a valid env:NAME reference")
        if name not in self.environ:
            return self.fail(path, f"environment variable {name} is not set")
        if self.environ[name] == "":
            # An empty variable is nearly always a deployment mistake; "" in the file clears.
            return self.fail(path, f"environment variable {name} is empty")
        return {"value": self.environ[name], "ref": value}


def _key_path(path: str, key: str) -> str:
    shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else repr(key)
    return f"{path}.{shown}" if path else shown


def _unknown_keys(checker: _Checker, path: str, table: Mapping, allowed) -> None:
    for key in table:
        if key in allowed:
            continue
        match = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
        hint = f"did you mean {match[0]}?" if match else f"expected one of: {', '.join(allowed)}"
        checker.fail(_key_path(path, key), f"unknown field ({hint})")


def _table_list(checker: _Checker, path: str, value, header: str) -> list[tuple[str, Mapping]]:
    if not isinstance(value, list):
        checker.fail(path, f"expected an array of tables ([[{header}]]), got {_describe(value)}")
        return []
    tables = []
    for index, item in enumerate(value):
        if isinstance(item, Mapping):
            tables.append((f"{path}[{index}]", item))
        else:
            checker.fail(f"{path}[{index}]", f"expected a table, got {_describe(item)}")
    return tables


# field name -> (check(checker, path, value), default); _MISSING as default means required.
_DIRECTORY_FIELDS = {
    "name": (lambda c, p, v: c.string(p, v, max_length=100), _MISSING),
    "servers": (lambda c, p, v: c.string_list(p, v, c.ldap_url), _MISSING),
    "tls_mode": (lambda c, p, v: c.choice(p, v, TLS_MODES), "none"),
    "ca_file": (lambda c, p, v: c.optional_string(p, v, max_length=1024), None),
    "verify_certificate": (lambda c, p, v: c.boolean(p, v), True),
    "bind_dn": (lambda c, p, v: c.string(p, v, max_length=1024, allow_empty=True), ""),
    "bind_password": (lambda c, p, v: c.secret(p, v), _MISSING),
    "base_dn": (lambda c, p, v: c.string(p, v, max_length=1024), _MISSING),
    "login_attributes": (lambda c, p, v: c.string_list(p, v, c.attribute), ["uid"]),
    "mail_attribute": (lambda c, p, v: c.attribute(p, v), "mail"),
    "manager_attribute": (lambda c, p, v: c.attribute(p, v), "manager"),
    "group_attribute": (lambda c, p, v: c.attribute(p, v), "memberOf"),
    "nested_groups": (lambda c, p, v: c.boolean(p, v), False),
    "connect_timeout": (lambda c, p, v: c.integer(p, v, low=1, high=60), 5),
    "receive_timeout": (lambda c, p, v: c.integer(p, v, low=1, high=300), 10),
}

_MAIL_SERVER_FIELDS = {
    "name": (lambda c, p, v: c.string(p, v, max_length=100), _MISSING),
    "host": (lambda c, p, v: c.host(p, v), _MISSING),
    "port": (lambda c, p, v: c.integer(p, v, low=1, high=65535), 587),
    "security": (lambda c, p, v: c.choice(p, v, SMTP_SECURITY), "starttls"),
    "username": (lambda c, p, v: c.string(p, v, max_length=255, allow_empty=True), ""),
    "password": (lambda c, p, v: c.secret(p, v), _MISSING),
    "from_address": (lambda c, p, v: c.mail_address(p, v), _MISSING),
    "verify_certificate": (lambda c, p, v: c.boolean(p, v), True),
    "ca_file": (lambda c, p, v: c.optional_string(p, v, max_length=1024), None),
    "timeout": (lambda c, p, v: c.integer(p, v, low=1, high=300), 10),
}

# The secret of each kind, whose absence means "keep the stored one" rather than a default.
_SECRET_FIELD = {Directory: "bind_password", MailServer: "password"}
_ORGANISATION_FIELDS = ("slug", "name", "parent", "directories", "mail_servers", "approval_profiles", "policies",
                        "password_policy", "mfa_policy")
_MFA_POLICY_FIELDS = ("mode", "accounts")
_PASSWORD_POLICY_FIELDS = ("strength", "expiry_days", "history_count", "lockout_threshold", "lockout_minutes")
# The same ranges as the admin page's form (blueprints/admin/password_policy.py).
LOCKOUT_THRESHOLD_RANGE = (3, 100)
LOCKOUT_MINUTES_RANGE = (1, 1440)
_PROFILE_FIELDS = (
    "name", "kind", "server_url", "subject", "message", "link_lifetime_minutes", "notify_manager_on_failure",
    "first_factor", "fallback_approver", "default", "mail_servers", "directories",
)
_MANAGER_ONLY = ("first_factor", "fallback_approver")
_POLICY_FIELDS = ("name", "profile", "directory", "attribute", "values", "enabled")


def _check_fields(checker: _Checker, path: str, table: Mapping, fields: dict, secret: str) -> dict | None:
    _unknown_keys(checker, path, table, fields)
    result, ok = {}, True
    for name, (check, default) in fields.items():
        field_path = _key_path(path, name)
        if name not in table:
            if name == secret:
                continue
            if default is _MISSING:
                checker.fail(field_path, "required field is missing")
                ok = False
            else:
                result[name] = list(default) if isinstance(default, list) else default
            continue
        value = check(checker, field_path, table[name])
        if value is _INVALID:
            ok = False
        else:
            result[name] = value
    return result if ok else None


def _check_directory(checker: _Checker, path: str, table: Mapping) -> dict | None:
    entry = _check_fields(checker, path, table, _DIRECTORY_FIELDS, "bind_password")
    if entry is None:
        return None
    # The directory service turns ldaps:// into implicit TLS and tls_mode into the TLS
    # setup, so a mismatch would connect in a way nobody asked for.
    for index, url in enumerate(entry["servers"]):
        secure = url.lower().startswith("ldaps://")
        if entry["tls_mode"] == "ldaps" and not secure:
            checker.fail(f"{path}.servers[{index}]", f"{url!r}: tls_mode \"ldaps\" needs ldaps:// URLs")
            entry = None
        elif entry["tls_mode"] != "ldaps" and secure:
            checker.fail(
                f"{path}.servers[{index}]",
                f"{url!r} is an ldaps:// URL but tls_mode is {entry['tls_mode']!r} (use tls_mode = \"ldaps\")",
            )
            entry = None
        if entry is None:
            break
    return entry


class _Table:
    """Reads the fields of one table, recording what is missing or of the wrong type."""

    def __init__(self, checker: _Checker, path: str, table: Mapping, allowed):
        _unknown_keys(checker, path, table, allowed)
        self.checker, self.path, self.table, self.ok = checker, path, table, True

    def get(self, name: str, check, default=_MISSING):
        """The checked value of ``name``, ``default`` when absent, or _INVALID."""
        path = _key_path(self.path, name)
        if name not in self.table:
            if default is _MISSING:
                self.checker.fail(path, "required field is missing")
                self.ok = False
                return _INVALID
            return default
        value = check(path, self.table[name])
        if value is _INVALID:
            self.ok = False
        return value


def _name_list(checker: _Checker, what: str):
    """Check for a list of names (mail servers, directories), possibly empty: the profile
    service reports an empty list in its own words."""

    def check(path, value):
        if not isinstance(value, list):
            return checker.fail(path, f"expected an array of {what} names, got {_describe(value)}")
        return checker.string_list(path, value, lambda p, v: checker.string(p, v, max_length=100),
                                   allow_empty_list=True)

    return check


def _check_profile(checker: _Checker, path: str, table: Mapping) -> dict | None:
    """An approval profile's fields, type-checked; the rules are those of services.profiles,
    applied at import (they need the database)."""
    fields = _Table(checker, path, table, _PROFILE_FIELDS)
    entry = {"name": fields.get("name", lambda p, v: checker.string(p, v, max_length=100))}
    entry["kind"] = fields.get("kind", lambda p, v: checker.choice(p, v, PROFILE_KINDS), "user")
    entry["server_url"] = fields.get("server_url", checker.text)
    subject, message = profile_service.default_texts(entry["kind"] if entry["kind"] in PROFILE_KINDS else "user")
    entry["subject"] = fields.get("subject", checker.text, subject)
    entry["message"] = fields.get("message", checker.text, message)
    entry["link_lifetime_minutes"] = fields.get(
        "link_lifetime_minutes", checker.whole_number, profile_service.DEFAULT_LIFETIME)
    entry["notify_manager_on_failure"] = fields.get("notify_manager_on_failure", checker.boolean, False)
    if entry["kind"] == "user":
        # The profile service ignores them for user approval; a file that sets them means something else.
        for name in _MANAGER_ONLY:
            if name in table:
                checker.fail(_key_path(path, name), 'only a manager-approval profile (kind = "manager") has this field')
                fields.ok = False
    entry["first_factor"] = fields.get("first_factor", lambda p, v: checker.choice(p, v, FIRST_FACTORS), "password")
    entry["fallback_approver"] = fields.get("fallback_approver", checker.text, "")
    entry["default"] = fields.get("default", checker.boolean, False)
    entry["mail_servers"] = fields.get("mail_servers", _name_list(checker, "mail server"))
    entry["directories"] = fields.get("directories", _name_list(checker, "directory"))
    return entry if fields.ok else None


def _check_password_policy(checker: _Checker, path: str, table) -> dict | None:
    """The ``[organisations.password_policy]`` table, every field checked against the
    limits of services.password_policy and of the admin page; absent fields get the
    defaults. ``expiry_days = 0`` (or absent) means passwords never expire (stored None)."""
    if not isinstance(table, Mapping):
        checker.fail(path, f"expected a table ([organisations.password_policy]), got {_describe(table)}")
        return None
    fields = _Table(checker, path, table, _PASSWORD_POLICY_FIELDS)
    entry = {
        "strength": fields.get("strength", lambda p, v: checker.choice(p, v, STRENGTH_PRESETS), "nist"),
        "expiry_days": fields.get("expiry_days", lambda p, v: checker.integer(
            p, v, low=0, high=password_policy_service.MAX_EXPIRY_DAYS), 0),
        "history_count": fields.get("history_count", lambda p, v: checker.integer(
            p, v, low=0, high=password_policy_service.MAX_HISTORY), 0),
        "lockout_threshold": fields.get("lockout_threshold", lambda p, v: checker.integer(
            p, v, low=LOCKOUT_THRESHOLD_RANGE[0], high=LOCKOUT_THRESHOLD_RANGE[1]), 10),
        "lockout_minutes": fields.get("lockout_minutes", lambda p, v: checker.integer(
            p, v, low=LOCKOUT_MINUTES_RANGE[0], high=LOCKOUT_MINUTES_RANGE[1]), 15),
    }
    if not fields.ok:
        return None
    entry["expiry_days"] = entry["expiry_days"] or None
    return entry


def _check_mfa_policy(checker: _Checker, path: str, table) -> dict | None:
    """The ``[organisations.mfa_policy]`` table: a mode and, for ``selected`` and
    ``all_except``, the usernames it lists (resolved to accounts at import)."""
    if not isinstance(table, Mapping):
        checker.fail(path, f"expected a table ([organisations.mfa_policy]), got {_describe(table)}")
        return None
    fields = _Table(checker, path, table, _MFA_POLICY_FIELDS)
    entry = {
        "mode": fields.get("mode", lambda p, v: checker.choice(p, v, MFA_MODES), "off"),
        "accounts": fields.get("accounts", lambda p, v: checker.string_list(
            p, v, lambda p2, v2: checker.string(p2, v2, max_length=256), allow_empty_list=True), []),
    }
    if not fields.ok:
        return None
    if entry["accounts"] and entry["mode"] not in ("selected", "all_except"):
        checker.fail(_key_path(path, "accounts"), f"only mode \"selected\" or \"all_except\" lists accounts, "
                                                  f"not {entry['mode']!r}")
        return None
    return entry


def _check_policy(checker: _Checker, path: str, table: Mapping) -> dict | None:
    """A policy's fields, type-checked, its attribute and each value checked by
    services.policy; the profile and directory are resolved at import."""
    fields = _Table(checker, path, table, _POLICY_FIELDS)

    def attribute(p, v):
        if checker.text(p, v) is _INVALID:
            return _INVALID
        try:
            return policy_service.canonical_attribute(v)
        except policy_service.PolicyError as exc:
            return checker.fail(p, str(exc))

    def pattern(p, v):
        if checker.text(p, v) is _INVALID:
            return _INVALID
        problem = policy_service.validate_pattern(v)
        return checker.fail(p, problem) if problem else v

    def values(p, v):
        if not isinstance(v, list):
            return checker.fail(p, f"expected an array of strings, got {_describe(v)}")
        return checker.string_list(p, v, pattern, allow_empty_list=True)

    entry = {
        "name": fields.get("name", checker.text, ""),
        "profile": fields.get("profile", lambda p, v: checker.string(p, v, max_length=100)),
        "directory": fields.get("directory", lambda p, v: checker.string(p, v, max_length=100)),
        "attribute": fields.get("attribute", attribute),
        "values": fields.get("values", values),
        "enabled": fields.get("enabled", checker.boolean, True),
    }
    return entry if fields.ok else None


def _cycles(order: list[str], parents: Mapping[str, str | None]) -> list[tuple[str, list[str]]]:
    """(slug, chain) for each parent cycle reached from ``order``, reported once per cycle
    at its first member in ``order``; chain reads "a → b → a"."""
    found, reported = [], set()
    for start in order:
        chain, current = [start], parents.get(start)
        while current is not None and current != start and current not in chain:
            chain.append(current)
            current = parents.get(current)
        if current != start:
            continue
        members = frozenset(chain)
        if members not in reported:
            reported.add(members)
            found.append((start, chain + [start]))
    return found


def parse(text: str, environ: Mapping[str, str] | None = None) -> dict:
    """Parse and validate a configuration file; return a plain structure for ``import_config``.

    The result is ``{"organisations": [{"slug", "name", "parent", "directories": [...],
    "mail_servers": [...], "approval_profiles": [...], "policies": [...] or None,
    "password_policy": {...} or None, "mfa_policy": {...} or None}]}``
    (``policies`` None when the organisation table has no such key) with every default
    filled in, each directory and mail server carrying its ``position``, and secrets resolved to ``{"value": plaintext, "ref":
    "env:NAME" | None}`` (so never log it). ``environ`` defaults to ``os.environ``.
    Parents that are not in the file are checked against the database by
    ``import_config``. Raises ConfigFileError listing every problem.
    """
    environ = os.environ if environ is None else environ
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigFileError([f"byte {exc.start}: the file is not UTF-8 text"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError([_toml_error(exc)]) from None

    checker = _Checker(environ)
    _unknown_keys(checker, "", data, ("organisations",))
    organisations, slugs = [], {}
    for path, table in _table_list(checker, "organisations", data.get("organisations", []), "organisations"):
        _unknown_keys(checker, path, table, _ORGANISATION_FIELDS)
        entry = {"directories": [], "mail_servers": [], "approval_profiles": [], "policies": None,
                 "password_policy": None, "mfa_policy": None}
        for name in ("slug", "name"):
            if name not in table:
                checker.fail(f"{path}.{name}", "required field is missing")
        if "slug" in table:
            slug = checker.string(f"{path}.slug", table["slug"], max_length=64)
            if slug is not _INVALID and not SLUG_RE.fullmatch(slug):
                slug = checker.fail(f"{path}.slug", f"{slug!r} must be 2 to 64 of a-z, 0-9 and -")
            if slug is not _INVALID:
                if slug in slugs:
                    checker.fail(f"{path}.slug", f"{slug!r} is already used by {slugs[slug]}")
                else:
                    slugs[slug] = path
                entry["slug"] = slug
        if "name" in table:
            entry["name"] = checker.string(f"{path}.name", table["name"], max_length=200)
        entry["parent"] = None
        if "parent" in table:
            parent = checker.string(f"{path}.parent", table["parent"], max_length=64)
            if parent is not _INVALID and not SLUG_RE.fullmatch(parent):
                parent = checker.fail(f"{path}.parent", f"{parent!r} is not an organisation slug")
            entry["parent"] = parent
        for kind, check in (("directories", _check_directory), ("mail_servers", None)):
            names: dict[str, str] = {}
            for position, (item_path, item) in enumerate(
                _table_list(checker, f"{path}.{kind}", table.get(kind, []), f"organisations.{kind}")
            ):
                if check is not None:
                    child = check(checker, item_path, item)
                else:
                    child = _check_fields(checker, item_path, item, _MAIL_SERVER_FIELDS, "password")
                name = item.get("name")
                if isinstance(name, str):
                    # Checked even when other fields are wrong: a duplicate is worth reporting too.
                    if name in names:
                        checker.fail(f"{item_path}.name", f"{name!r} is already used by {names[name]}")
                        child = None
                    else:
                        names[name] = item_path
                if child is not None:
                    child["position"] = position
                    entry[kind].append(child)
        _parse_profiles(checker, path, table, entry)
        if "password_policy" in table:
            entry["password_policy"] = _check_password_policy(checker, f"{path}.password_policy",
                                                              table["password_policy"])
        if "mfa_policy" in table:
            entry["mfa_policy"] = _check_mfa_policy(checker, f"{path}.mfa_policy", table["mfa_policy"])
        if "policies" in table:
            entry["policies"] = []
            for item_path, item in _table_list(checker, f"{path}.policies", table["policies"], "organisations.policies"):
                child = _check_policy(checker, item_path, item)
                if child is not None:
                    entry["policies"].append(child)
        organisations.append((path, entry))

    # Cycles among organisations of the file alone; those through the database are found at import.
    file_parents = {e["slug"]: e["parent"] for _, e in organisations if isinstance(e.get("slug"), str)}
    file_parents = {s: (p if isinstance(p, str) else None) for s, p in file_parents.items()}
    for slug, chain in _cycles(list(file_parents), file_parents):
        path = slugs[slug]
        checker.fail(f"{path}.parent", f"{file_parents[slug]!r} makes a cycle: {' → '.join(chain)}")

    if checker.errors:
        raise ConfigFileError(checker.errors)
    return {"organisations": [entry for _, entry in organisations]}


def _parse_profiles(checker: _Checker, path: str, table: Mapping, entry: dict) -> None:
    names: dict[str, str] = {}
    default_at = None
    for item_path, item in _table_list(
        checker, f"{path}.approval_profiles", table.get("approval_profiles", []), "organisations.approval_profiles"
    ):
        child = _check_profile(checker, item_path, item)
        name = item.get("name")
        if isinstance(name, str):
            key = name.strip()  # the profile service stores names stripped
            if key in names:
                checker.fail(f"{item_path}.name", f"{name!r} is already used by {names[key]}")
                child = None
            else:
                names[key] = item_path
        if item.get("default") is True:
            if default_at is not None:
                checker.fail(f"{item_path}.default",
                             f"only one profile can be the default, and {default_at} already says default = true")
                child = None
            else:
                default_at = item_path
        if child is not None:
            entry["approval_profiles"].append(child)


def _toml_error(exc: tomllib.TOMLDecodeError) -> str:
    # Python 3.14 exposes the position; 3.11 only has it inside the message.
    if getattr(exc, "lineno", None) and getattr(exc, "msg", None):
        return f"line {exc.lineno}, column {exc.colno}: {exc.msg}"
    message = str(exc)
    match = re.fullmatch(r"(?s)(.*) \(at line (\d+), column (\d+)\)", message)
    if match:
        return f"line {match[2]}, column {match[3]}: {match[1]}"
    match = re.fullmatch(r"(?s)(.*) \(at end of document\)", message)
    if match:
        return f"end of file: {match[1]}"
    return f"TOML syntax error: {message}"


# --------------------------------------------------------------------------- import


@contextmanager
def _import_transaction():
    """One transaction that also keeps two imports from interleaving."""
    if is_postgres():
        with db.atomic():
            db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK_ID,))
            yield
    else:
        # IMMEDIATE takes the write lock up front: a read-then-write upgrade could otherwise
        # fail with "database is locked" halfway through the checks.
        with db.atomic(lock_type="IMMEDIATE"):
            yield


def _check_parents(config: dict) -> None:
    """Parents must exist (in the file or the database) and form no cycle with the database."""
    entries = config["organisations"]
    slug_of = dict(Organisation.select(Organisation.id, Organisation.slug).tuples())
    parents: dict[str, str | None] = {
        slug: slug_of.get(parent_id)
        for slug, parent_id in Organisation.select(Organisation.slug, Organisation.parent).tuples()
    }
    for entry in entries:
        parents[entry["slug"]] = entry["parent"]
    errors = []
    for index, entry in enumerate(entries):
        if entry["parent"] is not None and entry["parent"] not in parents:
            errors.append(
                f"organisations[{index}].parent: no organisation {entry['parent']!r} in the file or the database"
            )
    index_of = {entry["slug"]: index for index, entry in enumerate(entries)}
    for slug, chain in _cycles([e["slug"] for e in entries], parents):
        errors.append(
            f"organisations[{index_of[slug]}].parent: {parents[slug]!r} makes a cycle with the database: "
            f"{' → '.join(chain)}"
        )
    if errors:
        raise ConfigFileError(errors)


def _secret_differs(row, name: str, secret: dict) -> bool:
    stored, ref = getattr(row, f"{name}_encrypted"), getattr(row, f"{name}_ref")
    if secret["value"] == "":
        return stored is not None or ref is not None
    if stored is None or ref != secret["ref"]:
        return True
    try:
        return crypto.decrypt(stored) != secret["value"]
    except crypto.SecretUnreadable:
        return True


def _store_secret(row, name: str, secret: dict) -> None:
    crypto.store_secret(row, name, secret["value"], ref=secret["ref"])


def _upsert(model, kind: str, organisation: Organisation, entry: dict, summary: ImportSummary) -> None:
    secret_name = _SECRET_FIELD[model]
    values = {k: v for k, v in entry.items() if k != secret_name}
    secret = entry.get(secret_name)
    row = model.get_or_none((model.organisation == organisation) & (model.name == entry["name"]))
    if row is None:
        row = model(organisation=organisation, **values)
        if secret is not None:
            _store_secret(row, secret_name, secret)
        row.save()
        summary.created[kind] += 1
        return
    changed = False
    for key, value in values.items():
        if getattr(row, key) != value:
            setattr(row, key, value)
            changed = True
    if secret is not None and _secret_differs(row, secret_name, secret):
        # Re-encrypting an unchanged secret would change the stored token on every import.
        _store_secret(row, secret_name, secret)
        changed = True
    if changed:
        row.updated_at = utcnow()
        row.save()
        summary.updated[kind] += 1
    else:
        summary.unchanged[kind] += 1


def _by_name(model, organisation: Organisation) -> dict:
    return {row.name: row for row in model.select().where(model.organisation == organisation)}


def _resolve(names: list[str], rows: Mapping, path: str, what: str, header: str, errors: list[str], *,
             local: bool = False) -> list | None:
    """The ids of ``names`` (None for "local" when ``local``), or None after recording errors."""
    ids, ok = [], True
    for index, name in enumerate(names):
        if local and name == LOCAL:
            ids.append(None)
        elif name in rows:
            ids.append(rows[name].id)
        else:
            hint = f'declare it with [[{header}]]' + (f' or write "{LOCAL}" for local accounts' if local else "")
            errors.append(f"{path}[{index}]: no {what} {name!r} in this organisation ({hint})")
            ok = False
    return ids if ok else None


def _profile_errors(path: str, exc_errors: Mapping[str, list[str]]) -> list[str]:
    return [f"{path}.{field}: {message}" for field, messages in exc_errors.items() for message in messages]


def _import_profiles(org: Organisation, path: str, items: list[dict], summary: ImportSummary,
                     errors: list[str], actor: str) -> set[str]:
    """Upsert the organisation's approval profiles through services.profiles; return the
    names of those that could not be saved (their problems are in ``errors``)."""
    failed: set[str] = set()
    mail_servers, directories = _by_name(MailServer, org), _by_name(Directory, org)
    for index, item in enumerate(items):
        item_path = f"{path}.approval_profiles[{index}]"
        name = item["name"].strip()
        server_ids = _resolve(item["mail_servers"], mail_servers, f"{item_path}.mail_servers", "mail server",
                              "organisations.mail_servers", errors)
        directory_ids = _resolve(item["directories"], directories, f"{item_path}.directories", "directory",
                                 "organisations.directories", errors, local=True)
        if server_ids is None or directory_ids is None:
            failed.add(name)
            continue
        values = {key: item[key] for key in profile_service.FIELDS}
        values["is_default"] = item["default"]
        profile = ApprovalProfile.get_or_none((ApprovalProfile.organisation == org) & (ApprovalProfile.name == name))
        clean, servers, found, problems = profile_service.check(org, profile, values, server_ids, directory_ids)
        if problems:
            errors.extend(_profile_errors(item_path, problems))
            failed.add(name)
            continue
        if profile is not None:
            same = (
                {key: clean[key] for key in profile_service.FIELDS} == profile_service.values_of(profile)
                and [s.id for s in servers] == [s.id for s in profile_service.mail_servers_of(profile)]
                and [d and d.id for d in found] == [d and d.id for d in profile_service.directories_of(profile)]
            )
            if same:
                if item["default"] and not profile.is_default:
                    profile_service.set_default(profile, actor=actor)
                    summary.updated["approval_profiles"] += 1
                else:
                    summary.unchanged["approval_profiles"] += 1
                continue
        try:
            profile_service.save(org, profile, values, server_ids, directory_ids, actor=actor)
        except profile_service.ProfileError as exc:
            errors.extend(_profile_errors(item_path, exc.errors))
            failed.add(name)
            continue
        (summary.created if profile is None else summary.updated)["approval_profiles"] += 1
    if items and not failed and profile_service.default_profile(org) is None:
        first = ApprovalProfile.get((ApprovalProfile.organisation == org) & (ApprovalProfile.name == items[0]["name"].strip()))
        profile_service.set_default(first, actor=actor)
    return failed


def _import_password_policy(org: Organisation, values: dict, summary: ImportSummary, actor: str) -> None:
    """Store the organisation's password policy through services.password_policy.save
    (which audits it), unless it already has exactly these values."""
    current = PasswordPolicy.get_or_none(PasswordPolicy.organisation == org)
    if current is not None and all(getattr(current, key) == value for key, value in values.items()):
        summary.unchanged["password_policies"] += 1
        return
    password_policy_service.save(org, dict(values), actor=actor)
    (summary.created if current is None else summary.updated)["password_policies"] += 1


def _import_mfa_policy(org: Organisation, path: str, values: dict, summary: ImportSummary, errors: list[str],
                      actor: str) -> None:
    """Store the organisation's two-factor enforcement through services.mfa_policy.save
    (which audits it), unless it already is exactly this; unknown usernames are errors."""
    found = {row.username: row.id for row in Account.select(Account.id, Account.username).where(
        (Account.organisation == org) & (Account.username.in_(values["accounts"])))} if values["accounts"] else {}
    missing = [name for name in values["accounts"] if name not in found]
    if missing:
        errors.append(f"{path}.mfa_policy.accounts: no account {', '.join(map(repr, missing))} in {org.slug} "
                      "(accounts are not part of the file: create them first)")
        return
    ids = sorted(found.values())
    current = MfaPolicy.get_or_none(MfaPolicy.organisation == org)
    if current is not None and current.mode == values["mode"] and sorted(
            a.id for a in mfa_policy_service.listed_accounts(current)) == ids:
        summary.unchanged["mfa_policies"] += 1
        return
    mfa_policy_service.save(org, values["mode"], ids, actor=actor)
    (summary.created if current is None else summary.updated)["mfa_policies"] += 1


def _policy_matches(policy, item: dict) -> bool:
    directory = LOCAL if policy.directory_id is None else policy.directory.name
    return (
        (policy.name or "") == item["name"].strip()
        and policy.profile.name == item["profile"].strip()
        and directory == item["directory"]
        and policy.attribute == item["attribute"]
        and list(policy.values or []) == policy_service.parse_values(item["values"])
        and bool(policy.enabled) == item["enabled"]
    )


def _policies_unchanged(org: Organisation, items: list[dict]) -> bool:
    existing = list(policy_service.policies_of(org))
    return len(existing) == len(items) and all(_policy_matches(p, i) for p, i in zip(existing, items, strict=True))


def _import_policies(org: Organisation, path: str, items: list[dict], failed_profiles: set[str],
                     summary: ImportSummary, errors: list[str], actor: str) -> None:
    """Create the organisation's policies in file order through services.policy."""
    profiles, directories = _by_name(ApprovalProfile, org), _by_name(Directory, org)
    for index, item in enumerate(items):
        item_path = f"{path}.policies[{index}]"
        profile_name = item["profile"].strip()
        if profile_name in failed_profiles:
            continue  # that profile's own problems are reported; checking against its old state would mislead
        profile = profiles.get(profile_name)
        if profile is None:
            errors.append(f"{item_path}.profile: no approval profile {item['profile']!r} in this organisation "
                          "(declare it with [[organisations.approval_profiles]])")
            continue
        directory = LOCAL
        if item["directory"] != LOCAL:
            if item["directory"] not in directories:
                errors.append(f"{item_path}.directory: no directory {item['directory']!r} in this organisation "
                              f'(declare it with [[organisations.directories]] or write "{LOCAL}" for local accounts)')
                continue
            directory = directories[item["directory"]].id
        values = {"profile": profile.id, "directory": directory, "attribute": item["attribute"],
                  "values": list(item["values"]), "name": item["name"], "enabled": item["enabled"]}
        try:
            policy_service.save_policy(org, None, values, actor=actor)
        except policy_service.PolicyError as exc:
            errors.append(f"{item_path}.{exc.field or 'name'}: {exc}")
            continue
        summary.created["policies"] += 1


def import_config(text: str, environ: Mapping[str, str] | None = None, *, actor: str = ACTOR) -> ImportSummary:
    """Validate ``text`` and apply it in one transaction; return what was created and updated.

    Upserts by natural key and never deletes, except that a ``policies`` list replaces
    the organisation's policies (see the module docstring). Profile and policy changes are
    audited as ``actor``. Raises ConfigFileError, with nothing written, when the file or
    its references are wrong.
    """
    config = parse(text, environ)
    summary = ImportSummary()
    with _import_transaction():
        _check_parents(config)
        rows: dict[str, Organisation] = {}
        created: set[str] = set()
        for entry in config["organisations"]:
            org = Organisation.get_or_none(Organisation.slug == entry["slug"])
            if org is None:
                # The parent may be declared further down the file: it is set in the second pass.
                org = Organisation.create(slug=entry["slug"], name=entry["name"], parent=None)
                created.add(entry["slug"])
                summary.created["organisations"] += 1
            rows[entry["slug"]] = org
        for entry in config["organisations"]:
            org = rows[entry["slug"]]
            parent = None
            if entry["parent"] is not None:
                parent = rows.get(entry["parent"]) or Organisation.get(Organisation.slug == entry["parent"])
            parent_id = parent.id if parent is not None else None
            if entry["slug"] in created:
                if parent is not None:
                    org.parent = parent
                    org.save()
            elif org.name != entry["name"] or org.parent_id != parent_id:
                org.name, org.parent = entry["name"], parent
                org.save()
                summary.updated["organisations"] += 1
            else:
                summary.unchanged["organisations"] += 1
        for entry in config["organisations"]:
            org = rows[entry["slug"]]
            for item in entry["directories"]:
                _upsert(Directory, "directories", org, item, summary)
            for item in entry["mail_servers"]:
                _upsert(MailServer, "mail_servers", org, item, summary)
        # Profiles refer to the directories and mail servers of any organisation of the
        # file, and policies to the profiles: each kind once all of the previous is written.
        errors: list[str] = []
        for index, entry in enumerate(config["organisations"]):
            org, path = rows[entry["slug"]], f"organisations[{index}]"
            items = entry["policies"]
            replace = items is not None and not _policies_unchanged(org, items)
            if items is not None and not replace:
                summary.unchanged["policies"] += len(items)
            if replace:
                # Removed first, so that a profile may drop a directory only an old policy used.
                for policy in reversed(list(policy_service.policies_of(org))):
                    policy_service.delete_policy(policy, actor=actor)
                    summary.deleted["policies"] += 1
            failed = _import_profiles(org, path, entry["approval_profiles"], summary, errors, actor)
            if entry["password_policy"] is not None:
                _import_password_policy(org, entry["password_policy"], summary, actor)
            if entry["mfa_policy"] is not None:
                _import_mfa_policy(org, path, entry["mfa_policy"], summary, errors, actor)
            if replace:
                _import_policies(org, path, items, failed, summary, errors, actor)
        if errors:
            raise ConfigFileError(errors)  # rolls the whole transaction back
    return summary


# --------------------------------------------------------------------------- export

_EXPORT_HEADER = (
    "# Gatehouse configuration (format: services/configuration.py).\n"
    "# Secrets appear only as env:NAME references; stored literal secrets are left out\n"
    "# and kept by the database when this file is imported again.\n"
)


def _toml_value(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    # tomli_w knows TOML string escaping; only the value part of its output is kept.
    # Multi-line text (a profile's message) is written as a readable """ string.
    multiline = isinstance(value, str) and "\n" in value
    return tomli_w.dumps({"v": value}, multiline_strings=multiline)[len("v = "):].removesuffix("\n")


def _table(header: str, pairs: list[tuple[str, object]], indent: str) -> str:
    lines = [f"{indent}[[{header}]]"]
    lines += [f"{indent}{key} = {_toml_value(value)}" for key, value in pairs if value is not None]
    return "\n".join(lines) + "\n"


def _directory_pairs(row: Directory) -> list[tuple[str, object]]:
    return [
        ("name", row.name),
        ("servers", list(row.servers or [])),
        ("tls_mode", row.tls_mode),
        ("ca_file", row.ca_file or None),
        ("verify_certificate", bool(row.verify_certificate)),
        ("bind_dn", row.bind_dn or ""),
        ("bind_password", row.bind_password_ref),
        ("base_dn", row.base_dn),
        ("login_attributes", list(row.login_attributes or [])),
        ("mail_attribute", row.mail_attribute),
        ("manager_attribute", row.manager_attribute),
        ("group_attribute", row.group_attribute),
        ("nested_groups", bool(row.nested_groups)),
        ("connect_timeout", row.connect_timeout),
        ("receive_timeout", row.receive_timeout),
    ]


def _mail_server_pairs(row: MailServer) -> list[tuple[str, object]]:
    return [
        ("name", row.name),
        ("host", row.host),
        ("port", row.port),
        ("security", row.security),
        ("username", row.username or ""),
        ("password", row.password_ref),
        ("from_address", row.from_address),
        ("verify_certificate", bool(row.verify_certificate)),
        ("ca_file", row.ca_file or None),
        ("timeout", row.timeout),
    ]


def _profile_pairs(row: ApprovalProfile) -> list[tuple[str, object]]:
    manager = row.kind == "manager"
    return [
        ("name", row.name),
        ("kind", row.kind),
        ("server_url", row.server_url),
        ("subject", row.subject),
        ("message", row.message),
        ("link_lifetime_minutes", row.link_lifetime_minutes),
        ("notify_manager_on_failure", bool(row.notify_manager_on_failure)),
        ("first_factor", row.first_factor if manager else None),
        ("fallback_approver", (row.fallback_approver or None) if manager else None),
        ("default", True if row.is_default else None),
        ("mail_servers", [server.name for server in profile_service.mail_servers_of(row)]),
        ("directories", [LOCAL if d is None else d.name for d in profile_service.directories_of(row)]),
    ]


def _password_policy_text(row: PasswordPolicy) -> str:
    pairs = [
        ("strength", row.strength),
        ("expiry_days", row.expiry_days or 0),  # 0: never
        ("history_count", row.history_count),
        ("lockout_threshold", row.lockout_threshold),
        ("lockout_minutes", row.lockout_minutes),
    ]
    lines = ["  [organisations.password_policy]"] + [f"  {key} = {_toml_value(value)}" for key, value in pairs]
    return "\n".join(lines) + "\n"


def _mfa_policy_text(row: MfaPolicy) -> str:
    lines = ["  [organisations.mfa_policy]", f"  mode = {_toml_value(row.mode)}"]
    usernames = [account.username for account in mfa_policy_service.listed_accounts(row)]
    if usernames and row.mode in ("selected", "all_except"):
        lines.append(f"  accounts = {_toml_value(usernames)}")
    return "\n".join(lines) + "\n"


def _policy_pairs(row) -> list[tuple[str, object]]:
    return [
        ("name", row.name or None),
        ("profile", row.profile.name),
        ("directory", LOCAL if row.directory_id is None else row.directory.name),
        ("attribute", row.attribute),
        ("values", list(row.values or [])),
        ("enabled", bool(row.enabled)),
    ]


def export_config() -> str:
    """Everything ``import_config`` reads, as TOML that it accepts.

    Organisations are sorted by slug, directories and mail servers by position, approval
    profiles by name, policies in their order. No plaintext secret is written: only
    stored ``env:NAME`` references.
    """
    organisations = list(Organisation.select().order_by(Organisation.slug))
    slug_of = {org.id: org.slug for org in organisations}
    directories: dict[int, list[Directory]] = {}
    for row in Directory.select().order_by(Directory.position, Directory.name, Directory.id):
        directories.setdefault(row.organisation_id, []).append(row)
    mail_servers: dict[int, list[MailServer]] = {}
    for row in MailServer.select().order_by(MailServer.position, MailServer.name, MailServer.id):
        mail_servers.setdefault(row.organisation_id, []).append(row)

    chunks = [_EXPORT_HEADER]
    for org in organisations:
        pairs = [("slug", org.slug), ("name", org.name), ("parent", slug_of.get(org.parent_id))]
        chunks.append("\n" + _table("organisations", pairs, ""))
        for row in directories.get(org.id, []):
            chunks.append("\n" + _table("organisations.directories", _directory_pairs(row), "  "))
        for row in mail_servers.get(org.id, []):
            chunks.append("\n" + _table("organisations.mail_servers", _mail_server_pairs(row), "  "))
        password_policy = PasswordPolicy.get_or_none(PasswordPolicy.organisation == org)
        if password_policy is not None:
            chunks.append("\n" + _password_policy_text(password_policy))
        mfa_policy = MfaPolicy.get_or_none(MfaPolicy.organisation == org)
        if mfa_policy is not None:
            chunks.append("\n" + _mfa_policy_text(mfa_policy))
        profiles = ApprovalProfile.select().where(ApprovalProfile.organisation == org)
        for row in sorted(profiles, key=lambda p: (p.name.casefold(), p.name, p.id)):
            chunks.append("\n" + _table("organisations.approval_profiles", _profile_pairs(row), "  "))
        for row in policy_service.policies_of(org):
            chunks.append("\n" + _table("organisations.policies", _policy_pairs(row), "  "))
    return "".join(chunks)
