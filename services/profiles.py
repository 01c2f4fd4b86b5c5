"""Email approval profiles of an organisation: the message template, validation and
saving (with ordered mail servers and fallback directories), the default profile, delete.

Message and subject templates use ``{name}`` placeholders (``{{`` and ``}}`` for a literal
brace), from ``MESSAGE_PLACEHOLDERS`` only. They are rendered by ``render_message``, which
reads the placeholders itself and never calls ``str.format``: ``{user.__class__}``,
``{0}``, ``{user[0]}`` or ``{user!r:>10}`` are refused, not evaluated.

Used by the admin pages, configuration import and the sign-in flow (``compose``).
"""

from __future__ import annotations

import string
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import peewee

from models import (
    FIRST_FACTORS,
    PROFILE_KINDS,
    ApprovalProfile,
    Directory,
    MailServer,
    Organisation,
    Policy,
    ProfileDirectory,
    ProfileMailServer,
    db,
    utcnow,
)

from . import audit
from .accounts import EMAIL

MESSAGE_PLACEHOLDERS = {"user", "link", "ip", "browser", "expires", "minutes", "approver", "organisation"}
PLACEHOLDER_HELP = {
    "user": "who is signing in (name and username)",
    "link": "the sign-in or approval link (required in the message)",
    "ip": "the IP address the request came from",
    "browser": "the browser and system that asked",
    "expires": "when the link stops working (UTC)",
    "minutes": "how many minutes the link works",
    "approver": "the address the approval request goes to",
    "organisation": "the organisation's name",
}
KIND_LABELS = {"user": "User approval", "manager": "Manager approval"}
FIRST_FACTOR_LABELS = {"password": "Password", "email_link": "Email link to the user", "none": "Nothing"}

MIN_LIFETIME, MAX_LIFETIME, DEFAULT_LIFETIME = 5, 1440, 15
WARN_LIFETIME_ABOVE = 60
FIELDS = ("name", "kind", "server_url", "subject", "message", "link_lifetime_minutes",
          "notify_manager_on_failure", "first_factor", "fallback_approver")

DEFAULT_SUBJECTS = {
    "user": "Your sign-in link for {organisation}",
    "manager": "{user} asks to sign in: approve or deny",
}
DEFAULT_MESSAGES = {
    "user": (
        "Hello {user},\n\n"
        "Someone asked to sign in to {organisation} with your account.\n\n"
        "Sign in: {link}\n\n"
        "Requested from {ip} with {browser}. The link works once, until {expires} ({minutes} minutes).\n\n"
        "If this wasn't you, open the link and choose \"This wasn't me\", or ignore this email."
    ),
    "manager": (
        "Hello,\n\n"
        "{user} is signing in to {organisation} and needs your approval.\n\n"
        "Review the request: {link}\n\n"
        "Requested from {ip} with {browser}. The link works until {expires} ({minutes} minutes).\n\n"
        "Approve only if you expect {user} to be signing in right now."
    ),
}
SAMPLE_VALUES = {
    "user": "Ann Example (ann)",
    "ip": "203.0.113.7",
    "browser": "Firefox 128 on Windows",
    "approver": "manager@example.com",
}


class ProfileError(Exception):
    """Why a profile cannot be saved or deleted; ``field`` names the form field
    (``mail_servers`` / ``directories`` for the ordered lists). ``errors`` holds every
    problem found, field → messages, so a form can show them all at once."""

    def __init__(self, message: str, field: str | None = None, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.field = field
        self.errors = errors or {field or "name": [message]}


class MessageTemplateError(ValueError):
    """A message or subject template that cannot be rendered, with every reason."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


# ---------------------------------------------------------------- templates

def _parse(text: str) -> tuple[list[tuple[str, str | None]], list[str]]:
    """Split ``text`` into (literal, placeholder-or-None) pieces and the problems found."""
    problems: list[str] = []
    try:
        raw = list(string.Formatter().parse(text))
    except ValueError as exc:
        reason = str(exc)
        if "Single '}'" in reason:
            problems.append("a } has no matching {: write }} for a literal brace")
        else:
            problems.append("a { is not closed: write {{ for a literal brace, or close the placeholder like {user}")
        return [], problems
    pieces: list[tuple[str, str | None]] = []
    allowed = ", ".join("{" + name + "}" for name in sorted(MESSAGE_PLACEHOLDERS))
    for literal, name, spec, conversion in raw:
        if name is None:
            pieces.append((literal, None))
            continue
        shown = "{" + name + ("!" + conversion if conversion else "") + (":" + spec if spec else "") + "}"
        if name in MESSAGE_PLACEHOLDERS and not spec and not conversion:
            pieces.append((literal, name))
            continue
        pieces.append((literal, None))  # refused below; the text around it is still read
        if name == "":
            problems.append("an empty placeholder {} is not allowed: name one, like {user}, or write {{}} for braces")
        elif name in MESSAGE_PLACEHOLDERS:
            problems.append(f"{shown} cannot be formatted: write just {{{name}}}")
        elif name.strip() in MESSAGE_PLACEHOLDERS:
            problems.append(f"{shown} has spaces: write {{{name.strip()}}}")
        elif not name.isidentifier():
            problems.append(f"{shown} is not a placeholder: use one of {allowed}")
        else:
            problems.append(f"unknown placeholder {shown}: use one of {allowed}")
    return pieces, problems


def validate_template(text: str, *, require_link: bool = True) -> list[str]:
    """Every problem of a message template (empty when it is fine). The message must
    contain ``{link}``, else the email would carry no way to sign in or approve."""
    pieces, problems = _parse(text or "")
    unbalanced = problems and not pieces  # nothing was read: {link} cannot be looked for
    if not unbalanced and require_link and not any(name == "link" for _, name in pieces):
        problems.append("the message must contain {link}: without it the email carries no link")
    return problems


def render_message(template: str, **values) -> str:
    """``template`` with its placeholders replaced by ``values`` (converted with ``str``).

    Only bare ``{name}`` placeholders from ``MESSAGE_PLACEHOLDERS`` are understood; any
    other, or a placeholder without a value, raises ``MessageTemplateError``."""
    pieces, problems = _parse(template)
    missing = sorted({name for _, name in pieces if name is not None and name not in values})
    problems += [f"no value given for {{{name}}}" for name in missing]
    if problems:
        raise MessageTemplateError(problems)
    return "".join(literal + ("" if name is None else str(values[name])) for literal, name in pieces)


def _one_line(value) -> str:
    # Values such as the browser come from the requester: never let them add header lines.
    return " ".join(str(value).split())


def format_expiry(expires_at: datetime) -> str:
    """How ``{expires}`` is written: ``2025-03-01 14:32 UTC``."""
    if expires_at.tzinfo is not None:
        expires_at = expires_at.astimezone(UTC).replace(tzinfo=None)
    return expires_at.strftime("%Y-%m-%d %H:%M UTC")


def compose(
    profile: ApprovalProfile, *, user: str, link: str, ip: str, browser: str, expires_at: datetime,
    approver: str = "",
) -> tuple[str, str]:
    """The (subject, body) of the email ``profile`` sends for one sign-in request.

    ``user`` is how the person signing in is named, ``approver`` the recipient's address
    for manager approval. The subject is kept to one line."""
    values = {
        "user": user, "link": link, "ip": ip, "browser": browser, "expires": format_expiry(expires_at),
        "minutes": profile.link_lifetime_minutes, "approver": approver, "organisation": profile.organisation.name,
    }
    subject = _one_line(render_message(profile.subject, **{k: _one_line(v) for k, v in values.items()}))
    return subject, render_message(profile.message, **values)


def default_texts(kind: str) -> tuple[str, str]:
    """The suggested (subject, message) for a profile of ``kind``."""
    kind = kind if kind in PROFILE_KINDS else "user"
    return DEFAULT_SUBJECTS[kind], DEFAULT_MESSAGES[kind]


def is_default_text(text: str) -> bool:
    """True when ``text`` is one of the suggested subjects or messages, unchanged."""
    normalised = (text or "").replace("\r\n", "\n").strip()
    return normalised in {t.strip() for t in (*DEFAULT_SUBJECTS.values(), *DEFAULT_MESSAGES.values())} or not normalised


def preview(profile_values: dict, organisation_name: str = "Your organisation") -> tuple[str, str]:
    """The (subject, body) a profile with these values would send, filled with sample
    values. Raises ``ProfileError`` (field ``subject`` or ``message``) when a template is wrong."""
    kind = profile_values.get("kind") if profile_values.get("kind") in PROFILE_KINDS else "user"
    try:
        minutes = parse_lifetime(profile_values.get("link_lifetime_minutes"))
    except ProfileError:
        minutes = DEFAULT_LIFETIME
    base = (profile_values.get("server_url") or "https://gatehouse.example.com").strip().rstrip("/")
    path = "/a/" if kind == "manager" else "/l/"
    values = dict(
        SAMPLE_VALUES, link=f"{base}{path}sample-link-token", minutes=minutes, organisation=organisation_name,
        expires=format_expiry(utcnow() + timedelta(minutes=minutes)),
    )
    if kind != "manager":
        values["approver"] = "(the user's own address)"
    errors: dict[str, list[str]] = {}
    for field, required_link in (("subject", False), ("message", True)):
        problems = validate_template(profile_values.get(field) or "", require_link=required_link)
        if problems:
            errors[field] = problems
    if errors:
        field = next(iter(errors))
        raise ProfileError(errors[field][0], field, errors)
    subject = _one_line(render_message(profile_values.get("subject") or "", **values))
    return subject, render_message(profile_values.get("message") or "", **values)


# ---------------------------------------------------------------- validation

def lifetime_warning(minutes) -> str | None:
    """A warning (not an error) for a link lifetime that is allowed but long."""
    try:
        value = int(minutes)
    except (TypeError, ValueError):
        return None
    if WARN_LIFETIME_ABOVE < value <= MAX_LIFETIME:
        hours = value / 60
        return (f"Links stay usable for {hours:g} hours: a forwarded or intercepted email works that long. "
                "15–30 minutes is recommended.")
    return None


def parse_lifetime(raw) -> int:
    """The link lifetime in minutes from ``raw`` (int or text); ``ProfileError`` with the
    reason when it is not a whole number from 5 to 1440."""
    if isinstance(raw, bool):
        raw = None
    try:
        value = int(str(raw).strip()) if not isinstance(raw, int) else raw
    except ValueError:
        value = None
    if value is None:
        raise ProfileError(f"enter a whole number of minutes between {MIN_LIFETIME} and {MAX_LIFETIME}",
                           "link_lifetime_minutes")
    if value < MIN_LIFETIME:
        raise ProfileError(f"at least {MIN_LIFETIME} minutes: under {MIN_LIFETIME} minutes most people cannot open "
                           "their email in time", "link_lifetime_minutes")
    if value > MAX_LIFETIME:
        raise ProfileError(f"at most {MAX_LIFETIME} minutes (24 hours): over 24 hours a forwarded or stolen email "
                           "stays usable too long", "link_lifetime_minutes")
    return value


def _server_url(raw: str) -> str:
    url = (raw or "").strip()
    example = "enter the address people open Gatehouse at, like https://gatehouse.example.com"
    if not url:
        raise ProfileError(example, "server_url")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise ProfileError(example, "server_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise ProfileError(example, "server_url")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ProfileError("remove the ?query or #fragment: links are added after this address", "server_url")
    if parts.username or parts.password:
        raise ProfileError("remove the user name and password from the address", "server_url")
    if len(url) > 400:
        raise ProfileError("keep the address under 400 characters", "server_url")
    return url.rstrip("/")


def _text(values: dict, field: str, label: str, max_length: int) -> str:
    text = (values.get(field) or "").replace("\r\n", "\n").strip()
    if not text:
        raise ProfileError(f"enter the {label}", field)
    if len(text) > max_length:
        raise ProfileError(f"keep the {label} under {max_length} characters (it has {len(text)})", field)
    return text


def _ordered(ids: list, organisation: Organisation, model, field: str, what: str, allow_local: bool) -> list:
    """The objects for ``ids`` in that order, all of ``organisation``, each at most once."""
    if len(set(ids)) != len(ids):
        raise ProfileError(f"each {what} can be chosen only once", field)
    found = {}
    wanted = [i for i in ids if i is not None]
    if wanted:
        found = {row.id: row for row in model.select().where((model.id.in_(wanted)) & (model.organisation == organisation))}
    result = []
    for i in ids:
        if i is None and allow_local:
            result.append(None)
        elif i in found:
            result.append(found[i])
        else:
            raise ProfileError(f"that {what} does not exist any more: reload the page and choose again", field)
    return result


def check(
    organisation: Organisation, profile: ApprovalProfile | None, values: dict, mail_server_ids: list,
    directory_ids: list,
) -> tuple[dict, list, list, dict[str, list[str]]]:
    """Validate everything a save needs. Returns (clean values, mail servers, directories,
    errors by field); the errors are empty when the profile can be saved."""
    errors: dict[str, list[str]] = {}
    clean: dict = {}

    def attempt(field, function):
        try:
            clean[field] = function()
        except ProfileError as exc:
            errors.setdefault(exc.field or field, []).append(str(exc))

    def name():
        value = _text(values, "name", "profile name", 100)
        clash = ApprovalProfile.select().where(
            (ApprovalProfile.organisation == organisation) & (ApprovalProfile.name == value))
        if profile is not None:
            clash = clash.where(ApprovalProfile.id != profile.id)
        if clash.exists():
            raise ProfileError(f"another approval profile is already called {value!r}", "name")
        return value

    def kind():
        if values.get("kind") not in PROFILE_KINDS:
            raise ProfileError("choose user approval or manager approval", "kind")
        return values["kind"]

    def template(field, label, max_length, require_link):
        def run():
            text = _text(values, field, label, max_length)
            if field == "subject" and "\n" in text:
                raise ProfileError("keep the subject on one line", field)
            problems = validate_template(text, require_link=require_link)
            if problems:
                raise ProfileError("; ".join(problems), field)
            return text
        return run

    attempt("name", name)
    attempt("kind", kind)
    attempt("server_url", lambda: _server_url(values.get("server_url")))
    attempt("subject", template("subject", "email subject", 200, False))
    attempt("message", template("message", "message", 5000, True))
    attempt("link_lifetime_minutes", lambda: parse_lifetime(values.get("link_lifetime_minutes")))
    clean["notify_manager_on_failure"] = bool(values.get("notify_manager_on_failure"))

    if clean.get("kind") == "manager":
        def first_factor():
            value = values.get("first_factor") or "password"
            if value not in FIRST_FACTORS:
                raise ProfileError("choose password, email link or nothing", "first_factor")
            return value

        def fallback():
            value = (values.get("fallback_approver") or "").strip()
            if value and (len(value) > 320 or not EMAIL.match(value)):
                raise ProfileError("enter one email address, like approvals@example.com, or leave it empty",
                                   "fallback_approver")
            return value or None

        attempt("first_factor", first_factor)
        attempt("fallback_approver", fallback)
    else:
        # Manager-only settings mean nothing for user approval: store the defaults.
        clean["first_factor"], clean["fallback_approver"] = "password", None

    servers, directories = [], []
    try:
        servers = _ordered(list(mail_server_ids), organisation, MailServer, "mail_servers", "mail server", False)
        if not servers:
            raise ProfileError("choose at least one mail server to send the emails through", "mail_servers")
    except ProfileError as exc:
        errors.setdefault("mail_servers", []).append(str(exc))
    try:
        directories = _ordered(list(directory_ids), organisation, Directory, "directories", "directory", True)
        if not directories:
            raise ProfileError("choose at least one directory to find users in (local accounts count)", "directories")
        if profile is not None:
            kept = {d.id if d else None for d in directories}
            for policy in Policy.select().where(Policy.profile == profile):
                directory_id = policy.directory_id
                if directory_id not in kept:
                    where = policy.directory.name if policy.directory_id else "local accounts"
                    raise ProfileError(f"the policy {_policy_label(policy)} looks users up in {where}: keep it here "
                                       "or change that policy first", "directories")
    except ProfileError as exc:
        errors.setdefault("directories", []).append(str(exc))
    return clean, servers, directories, errors


# ---------------------------------------------------------------- saving

def save(
    organisation: Organisation, profile: ApprovalProfile | None, values: dict, mail_server_ids: list[int],
    directory_ids: list[int | None], *, actor: str,
) -> ApprovalProfile:
    """Create (``profile`` None) or update an approval profile.

    ``values`` holds ``FIELDS`` (the lifetime may be a string; ``is_default`` True also
    makes it the default). ``mail_server_ids`` and ``directory_ids`` are in the order they
    are tried; ``None`` in ``directory_ids`` is the built-in local directory. The first
    profile of an organisation becomes its default. Raises ``ProfileError`` with every
    problem in ``errors``."""
    with db.atomic():
        clean, servers, directories, errors = check(organisation, profile, values, mail_server_ids, directory_ids)
        if errors:
            field = next(iter(errors))
            raise ProfileError(errors[field][0], field, errors)
        creating = profile is None
        if creating:
            profile = ApprovalProfile(organisation=organisation)
            first = not ApprovalProfile.select().where(ApprovalProfile.organisation == organisation).exists()
            profile.is_default = first
        for field in FIELDS:
            setattr(profile, field, clean[field])
        profile.updated_at = utcnow()
        try:
            with db.atomic():
                profile.save()
        except peewee.IntegrityError:
            raise ProfileError(f"another approval profile is already called {clean['name']!r}", "name") from None
        ProfileMailServer.delete().where(ProfileMailServer.profile == profile).execute()
        for position, server in enumerate(servers):
            ProfileMailServer.create(profile=profile, mail_server=server, position=position)
        ProfileDirectory.delete().where(ProfileDirectory.profile == profile).execute()
        for position, directory in enumerate(directories):
            ProfileDirectory.create(profile=profile, directory=directory, position=position)
        audit.record(
            "profile.created" if creating else "profile.updated", actor=actor, organisation=organisation.slug,
            target=profile.name, details={
                "kind": profile.kind, "server_url": profile.server_url, "link_lifetime_minutes": profile.link_lifetime_minutes,
                "mail_servers": [s.name for s in servers],
                "directories": [d.name if d else "local" for d in directories],
                "first_factor": profile.first_factor if profile.kind == "manager" else None,
                "fallback_approver": profile.fallback_approver, "default": profile.is_default,
            },
        )
        if values.get("is_default") and not profile.is_default:
            set_default(profile, actor=actor)
    return profile


def set_default(profile: ApprovalProfile, *, actor: str) -> None:
    """Make ``profile`` its organisation's only default profile (one transaction)."""
    organisation = profile.organisation
    with db.atomic():
        previous = [p.name for p in ApprovalProfile.select().where(
            (ApprovalProfile.organisation == organisation) & ApprovalProfile.is_default & (ApprovalProfile.id != profile.id))]
        ApprovalProfile.update(is_default=False).where(
            (ApprovalProfile.organisation == organisation) & (ApprovalProfile.id != profile.id)).execute()
        ApprovalProfile.update(is_default=True).where(ApprovalProfile.id == profile.id).execute()
        profile.is_default = True
        audit.record("profile.default_changed", actor=actor, organisation=organisation.slug, target=profile.name,
                     details={"previous": previous})


def _policy_label(policy: Policy) -> str:
    return policy.name or f"#{policy.position + 1}"


def policies_using(profile: ApprovalProfile) -> list[str]:
    """Names of the policies that choose ``profile``, in policy order."""
    query = Policy.select().where(Policy.profile == profile).order_by(Policy.position, Policy.id)
    return [_policy_label(policy) for policy in query]


def delete_blockers(profile: ApprovalProfile) -> list[str]:
    """Why ``profile`` cannot be deleted now (empty when it can)."""
    reasons = []
    users = policies_using(profile)
    if users:
        several = len(users) > 1
        reasons.append(f"it is used by the polic{'ies' if several else 'y'}: {', '.join(users)}. "
                       f"Change or delete {'those policies' if several else 'that policy'} first")
    if profile.is_default and ApprovalProfile.select().where(
            (ApprovalProfile.organisation == profile.organisation) & (ApprovalProfile.id != profile.id)).exists():
        reasons.append("it is the default profile: make another profile the default first")
    return reasons


def delete(profile: ApprovalProfile, *, actor: str) -> None:
    """Delete a profile no policy uses and that is not the default of several."""
    with db.atomic():
        reasons = delete_blockers(profile)
        if reasons:
            raise ProfileError(f"{profile.name} cannot be deleted: " + "; ".join(reasons))
        profile.delete_instance()  # its mail server and directory links go with it (CASCADE)
        audit.record("profile.deleted", actor=actor, organisation=profile.organisation.slug, target=profile.name)


# ---------------------------------------------------------------- reading

def default_profile(organisation: Organisation) -> ApprovalProfile | None:
    """The profile used when no policy matches."""
    return ApprovalProfile.get_or_none((ApprovalProfile.organisation == organisation) & ApprovalProfile.is_default)


def mail_servers_of(profile: ApprovalProfile) -> list[MailServer]:
    """The mail servers ``profile`` sends through, in the order they are tried."""
    links = (ProfileMailServer.select(ProfileMailServer, MailServer).join(MailServer)
             .where(ProfileMailServer.profile == profile).order_by(ProfileMailServer.position, ProfileMailServer.id))
    return [link.mail_server for link in links]


def directories_of(profile: ApprovalProfile) -> list[Directory | None]:
    """The fallback directories of ``profile`` in search order; None is the local directory.
    One query: the directories come joined."""
    links = (ProfileDirectory.select(ProfileDirectory, Directory)
             .join(Directory, peewee.JOIN.LEFT_OUTER, on=(ProfileDirectory.directory == Directory.id))
             .where(ProfileDirectory.profile == profile).order_by(ProfileDirectory.position, ProfileDirectory.id))
    return [link.directory if link.directory_id is not None else None for link in links]


def values_of(profile: ApprovalProfile) -> dict:
    """The stored ``FIELDS`` of ``profile`` as a dict (for forms, previews, export)."""
    return {field: getattr(profile, field) for field in FIELDS}
