"""Directories of an organisation as the admin console edits them: validate and save
(bind password encrypted, write-only), delete when nothing uses them, and the admin's
"Test connection" and "Look up user" checks (audited).

The field rules are those of configuration as code (``services.configuration``), so a
directory typed into the console and one imported from a TOML file obey the same rules.
How a directory is *used* (connections, searches) belongs to ``services.directory``.
"""

from __future__ import annotations

import re

import peewee

from models import Directory, Organisation, Policy, ProfileDirectory, db, utcnow

from . import audit, configuration, crypto
from . import directory as directory_service

FIELDS = (
    "name", "servers", "tls_mode", "ca_file", "verify_certificate", "bind_dn", "base_dn", "login_attributes",
    "mail_attribute", "manager_attribute", "group_attribute", "nested_groups", "connect_timeout", "receive_timeout",
)
# Attributes never shown by "Look up user", whatever the server's access rules let through.
SECRET_ATTRIBUTES = {"userpassword", "unicodepwd", "ntpassword", "lmpassword", "sambantpassword",
                     "sambalmpassword", "authpassword", "supplementalcredentials", "dbcspwd"}

_PATH = re.compile(r"^directory\.(\w+)")
_ITEM = re.compile(r"directory\.\w+\[(\d+)\]")


class DirectorySettingsError(Exception):
    """Why a directory cannot be saved or deleted.

    ``errors`` maps a form field name to its messages (empty for a refusal that belongs
    to no field, such as a delete of a directory still in use)."""

    def __init__(self, errors: dict[str, list[str]] | str):
        if isinstance(errors, str):
            self.errors: dict[str, list[str]] = {}
            message = errors
        else:
            self.errors = errors
            message = "; ".join(m for messages in errors.values() for m in messages)
        super().__init__(message)


# Valid stand-ins for every field, so that the checks that need a valid directory (the
# TLS mode against the URLs) can run while other fields are still wrong.
_STAND_INS = {
    "name": "directory", "servers": ["ldap://localhost"], "tls_mode": "none", "ca_file": "",
    "verify_certificate": True, "bind_dn": "", "base_dn": "dc=example", "login_attributes": ["uid"],
    "mail_attribute": "mail", "manager_attribute": "manager", "group_attribute": "memberOf",
    "nested_groups": False, "connect_timeout": 5, "receive_timeout": 10,
}


def _configuration_errors(values: dict) -> dict[str, list[str]]:
    checker = configuration._Checker({})
    configuration._check_directory(checker, "directory", {name: values[name] for name in FIELDS})
    errors: dict[str, list[str]] = {}
    for line in checker.errors:
        path, _, message = line.partition(": ")
        match = _PATH.match(path)
        field = match.group(1) if match and match.group(1) in FIELDS else "name"
        message = _ITEM.sub(lambda m: f"entry {int(m.group(1)) + 1}", message)
        # The file's key names mean nothing on the form, which calls it "TLS mode".
        message = message.replace('tls_mode = "ldaps"', "TLS mode LDAPS").replace("tls_mode", "TLS mode")
        errors.setdefault(field, []).append(message[:1].upper() + message[1:] + ("" if message.endswith(".") else "."))
    return errors


def check(values: dict) -> dict[str, list[str]]:
    """Every problem with the directory ``values`` (the ``FIELDS``), by field name.

    Runs the configuration-as-code checks and turns their paths
    (``directory.servers[1]: ...``) into field names and readable positions."""
    errors = _configuration_errors(values)
    if errors and not {"servers", "tls_mode"} & errors.keys():
        # The file check stops before comparing URLs with the TLS mode when any field is
        # wrong; a person fixing a form wants every problem at once.
        probe = {**_STAND_INS, "servers": values["servers"], "tls_mode": values["tls_mode"]}
        for field, messages in _configuration_errors(probe).items():
            errors.setdefault(field, []).extend(messages)
    return errors


def problems(directory: Directory | None, values: dict, *, password: str | None = None,
             clear_password: bool = False) -> dict[str, list[str]]:
    """Every problem with saving ``values`` over ``directory`` (None: a new one), by field
    name: the field rules of :func:`check` and a bind DN left without a password."""
    errors = check(values)
    has_password = bool(password) or (
        directory is not None and bool(directory.bind_password_encrypted) and not clear_password)
    if (values.get("bind_dn") or "").strip() and not has_password:
        # Without a password the bind would be unauthenticated, which servers accept as anonymous.
        errors.setdefault("bind_password", []).append(
            "Enter the bind password for this bind DN, or leave the bind DN empty for anonymous searches.")
    return errors


def save(
    organisation: Organisation, directory: Directory | None, values: dict, *, password: str | None = None,
    clear_password: bool = False, actor: str,
) -> Directory:
    """Create (``directory`` None) or update a directory from form ``values`` (the ``FIELDS``).

    ``password`` None or empty keeps the stored bind password; ``clear_password`` removes
    it. Raises DirectorySettingsError listing every problem; nothing is written then.
    Cached connections are dropped so the next sign-in uses the new settings."""
    values = dict(values)
    values["name"] = (values.get("name") or "").strip()
    values["ca_file"] = (values.get("ca_file") or "").strip()
    errors = problems(directory, values, password=password, clear_password=clear_password)
    if errors:
        raise DirectorySettingsError(errors)
    name = values["name"]
    try:
        with db.atomic():
            clash = Directory.select().where((Directory.organisation == organisation) & (Directory.name == name))
            if directory is not None:
                clash = clash.where(Directory.id != directory.id)
            if clash.exists():
                raise DirectorySettingsError({"name": [f"Another directory is already called {name!r}."]})
            creating = directory is None
            if creating:
                last = Directory.select().where(Directory.organisation == organisation).count()
                directory = Directory(organisation=organisation, position=last)
            for field in FIELDS:
                setattr(directory, field, values[field])
            directory.ca_file = values["ca_file"] or None
            crypto.store_secret(directory, "bind_password", "" if clear_password else (password or None))
            directory.updated_at = utcnow()
            directory.save()
            audit.record(
                "directory.created" if creating else "directory.updated", actor=actor,
                organisation=organisation.slug, target=name,
                details={"servers": list(directory.servers), "tls_mode": directory.tls_mode,
                         "base_dn": directory.base_dn, "bind_dn": directory.bind_dn,
                         "password_changed": bool(password) or clear_password},
            )
    except peewee.IntegrityError:
        # Another admin saved the same name between our check and our write.
        raise DirectorySettingsError({"name": [f"Another directory is already called {name!r}."]}) from None
    directory_service.reset_connections()
    return directory


def usage(organisation: Organisation) -> dict[int, dict[str, int]]:
    """For each directory id of ``organisation``: how many approval profiles and policies use it."""
    counts: dict[int, dict[str, int]] = {}
    links = (ProfileDirectory.select(ProfileDirectory.directory, ProfileDirectory.profile).join(Directory)
             .where(Directory.organisation == organisation).tuples())
    for directory_id, profile_id in set(links):
        counts.setdefault(directory_id, {"profiles": 0, "policies": 0})["profiles"] += 1
    rules = (Policy.select(Policy.directory, peewee.fn.COUNT(Policy.id))
             .where((Policy.organisation == organisation) & Policy.directory.is_null(False))
             .group_by(Policy.directory).tuples())
    for directory_id, count in rules:
        counts.setdefault(directory_id, {"profiles": 0, "policies": 0})["policies"] += count
    return counts


def used_by(directory: Directory) -> list[str]:
    """What uses ``directory``, in words: "the approval profile Staff", "the policy Engineers"."""
    profiles = sorted({link.profile.name for link in
                       ProfileDirectory.select().where(ProfileDirectory.directory == directory)})
    policies = [policy.name or f"number {policy.position + 1}" for policy in
                Policy.select().where(Policy.directory == directory).order_by(Policy.position)]
    return [f"the approval profile {name}" for name in profiles] + [f"the policy {name}" for name in policies]


def delete(directory: Directory, *, actor: str) -> None:
    """Delete a directory that no approval profile or policy uses."""
    users = used_by(directory)
    if users:
        raise DirectorySettingsError(f"{directory.name} is used by {', '.join(users)}: change that first.")
    try:
        with db.atomic():
            directory.delete_instance()
            audit.record("directory.deleted", actor=actor, organisation=directory.organisation.slug,
                         target=directory.name)
    except peewee.IntegrityError:
        # A profile or policy started using it a moment ago (the foreign keys RESTRICT).
        raise DirectorySettingsError(f"{directory.name} was just put to use: reload the page to see where.") from None
    directory_service.reset_connections()


def try_connection(directory: Directory, *, actor: str) -> directory_service.ConnectionCheck:
    """Connect and bind with the saved settings now; say which server answered, how, how fast."""
    result = directory_service.check_connection(directory)
    audit.record("directory.tested", actor=actor, organisation=directory.organisation.slug, target=directory.name,
                 outcome="success" if result.ok else "failure",
                 details={"server": result.server, "result": result.message})
    return result


def look_up(directory: Directory, identifier: str, *, actor: str) -> directory_service.LookupReport:
    """The admin "Look up user" report for ``identifier``, with password attributes removed."""
    report = directory_service.lookup(directory, identifier)
    if report.user is not None:
        report.user.attributes = {name: values for name, values in sorted(report.user.attributes.items(),
                                                                           key=lambda item: item[0].lower())
                                  if name.split(";")[0].lower() not in SECRET_ATTRIBUTES}
    audit.record("directory.user_looked_up", actor=actor, organisation=directory.organisation.slug,
                 target=directory.name, outcome="failure" if report.error else "success",
                 details={"identifier": report.identifier[:256], "found": report.user is not None,
                          "error": report.error})
    return report
