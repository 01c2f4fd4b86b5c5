"""The policy engine: which approval profile a user signs in with, and why.

Two layers:

* **Pure** (no database, no directory): :class:`Rule`, :class:`Subject`,
  :func:`match_value`, :func:`validate_pattern` and :func:`evaluate`. Rules are tried top
  to bottom; the first enabled rule of the user's directory whose attribute has a value
  matching one of its patterns wins; no match means the default profile. Every rule tried
  leaves a :class:`Step` in the trace, so the tester (and the audit log) can say why.
* **Database**: :func:`policies_of`, :func:`decide` (what sign-in and the policy tester
  call), and the writes the admin pages make: :func:`save_policy`, :func:`delete_policy`,
  :func:`set_enabled`, :func:`move_policy`, :func:`reorder_policies`.

Patterns: a plain value is compared exactly but case-insensitively; ``*`` is a wildcard
anywhere (nothing else is special: ``[`` and ``?`` are literal); ``re:`` starts a regular
expression that must match the whole value, case-insensitively. A value that is a DN is
compared with DNs as a normalised full DN (case, spacing and escaping do not matter, a
prefix never matches). Patterns are validated when an admin saves them, so a bad regular
expression is reported next to the field and never at sign-in.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

try:  # Python 3.11+
    from re import _constants as _sre_constants
    from re import _parser as _sre_parser
except ImportError:  # pragma: no cover - older Pythons
    import sre_constants as _sre_constants  # type: ignore[no-redef]
    import sre_parse as _sre_parser  # type: ignore[no-redef]

import peewee
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import parse_dn

from models import (
    Account,
    ApprovalProfile,
    Directory,
    Organisation,
    Policy,
    db,
    utcnow,
)

from . import audit, ordering
from .profiles import default_profile, directories_of
from .directory import (
    DirectoryError,
    DirectoryUser,
    ManagerResult,
    _unescape_dn_value,
    attribute_values,
    find_local_user,
    find_user,
    normalise_dn,
    resolve_manager,
    valid_attribute_name,
    valid_identifier,
)

REGEX_PREFIX = "re:"
# Attributes that are not (only) LDAP attribute names; matched case-insensitively.
PSEUDO_ATTRIBUTES = ("memberOf", "group_name", "username", "mail", "department")
MAX_PATTERN_LENGTH = 512
MAX_REGEX_LENGTH = 200
MAX_VALUES = 100
# Regular expressions are compared only with values up to this length: with the nested
# repetition refused below, that bounds the backtracking a hostile value can cause.
MAX_REGEX_SUBJECT = 256
MAX_UNBOUNDED_REPEATS = 3
OUTCOMES = ("matched", "no match", "disabled", "other directory", "attribute missing")
LOCAL_LABEL = "Local accounts"


# --------------------------------------------------------------------------
# The pure engine
# --------------------------------------------------------------------------


@dataclass
class Rule:
    """One policy as the engine sees it. ``directory_id`` None = the local directory."""

    id: int | None
    position: int
    name: str
    profile_id: int
    directory_id: int | None
    attribute: str
    values: list[str]
    enabled: bool = True
    profile_name: str = ""
    directory_name: str = ""

    @property
    def label(self) -> str:
        """The name shown in traces: the policy's name or what it tests."""
        return self.name or f"{self.attribute} → {self.profile_name or f'profile {self.profile_id}'}"


@dataclass
class Subject:
    """A user as the engine sees them: their directory and attribute values."""

    directory_id: int | None
    username: str
    attributes: dict[str, list[str]] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)  # group DNs
    directory_name: str = ""


@dataclass
class Step:
    """What happened when one rule was tried."""

    rule_id: int | None
    name: str
    outcome: str  # one of OUTCOMES
    compared: list[str] = field(default_factory=list)  # the user's values that were compared
    reason: str = ""
    pattern: str | None = None  # the pattern that matched


@dataclass
class Decision:
    """The profile chosen, the rule that chose it (None: the default) and the trace."""

    profile_id: int | None
    matched_rule_id: int | None
    trace: list[Step] = field(default_factory=list)

    @property
    def is_default(self) -> bool:
        """True when no rule matched and the default profile applies."""
        return self.matched_rule_id is None


class UnsafePattern(ValueError):
    """A regular expression that is refused (invalid, too long or too slow to run)."""


def _key(value: str) -> str:
    """Comparison key for exact and wildcard matching: NFC, case-folded, trimmed."""
    return unicodedata.normalize("NFC", value).casefold().strip()


def _is_repeat(op) -> bool:
    names = ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT")
    return any(op is getattr(_sre_constants, n, None) for n in names)


def _children(op, av) -> list:
    """The sub-patterns of one parsed regex token."""
    c = _sre_constants
    if _is_repeat(op):
        return [av[2]]
    if op is c.SUBPATTERN:
        return [av[-1]]
    if op is c.BRANCH:
        return list(av[1])
    if op in (c.ASSERT, c.ASSERT_NOT):
        return [av[1]]
    if op is c.GROUPREF_EXISTS:
        return [p for p in av[1:] if p is not None]
    if op is getattr(c, "ATOMIC_GROUP", None):
        return [av]
    return []


def _tokens(parsed):
    """Every token of a parsed regex, depth first."""
    for op, av in parsed:
        yield op, av
        for child in _children(op, av):
            yield from _tokens(child)


def _check_backtracking(body: str) -> None:
    """Refuse regexes whose backtracking can explode: an unbounded repeat around something
    that itself repeats or branches (``(a+)+``, ``(a|aa)*``), or many unbounded repeats."""
    parsed = _sre_parser.parse(body)
    unbounded = 0
    for op, av in _tokens(parsed):
        if not _is_repeat(op) or av[1] != _sre_constants.MAXREPEAT:
            continue
        unbounded += 1
        for inner_op, inner_av in _tokens(av[2]):
            if (_is_repeat(inner_op) and inner_av[0] != inner_av[1]) or inner_op is _sre_constants.BRANCH:
                raise UnsafePattern(
                    "repeats a group that itself repeats or has alternatives, like (a+)+ or (x|xy)*, "
                    "which can take forever on some values: repeat a character class instead, like [a-z]+")
    if unbounded > MAX_UNBOUNDED_REPEATS:
        raise UnsafePattern(
            f"has {unbounded} open-ended repeats (*, + or {{n,}}); at most {MAX_UNBOUNDED_REPEATS} are allowed "
            "so that matching stays fast")


@lru_cache(maxsize=1024)
def compile_regex(body: str) -> re.Pattern:
    """The compiled, checked regex ``body`` (after ``re:``); raises UnsafePattern."""
    if not body:
        raise UnsafePattern("the regular expression after re: is empty")
    if len(body) > MAX_REGEX_LENGTH:
        raise UnsafePattern(f"the regular expression is too long ({len(body)} characters; at most {MAX_REGEX_LENGTH})")
    try:
        compiled = re.compile(body, re.IGNORECASE)
        _check_backtracking(body)
    except re.error as exc:
        raise UnsafePattern(f"not a valid regular expression: {exc}") from None
    except (RecursionError, OverflowError):
        raise UnsafePattern("the regular expression is too deeply nested") from None
    except UnsafePattern as exc:
        raise UnsafePattern(f"the regular expression {exc}") from None
    return compiled


@lru_cache(maxsize=1024)
def _wildcard(pattern_key: str) -> re.Pattern:
    """``*`` as "anything"; every other character literal (unlike fnmatch's ``[...]``/``?``)."""
    return re.compile(".*".join(re.escape(part) for part in pattern_key.split("*")), re.DOTALL)


def _looks_like_dn(value: str) -> bool:
    return "=" in value and normalise_dn(value) is not None


def match_value(pattern: str, actual: str) -> bool:
    """Whether one attribute value ``actual`` matches one policy ``pattern``.

    Exact (case-insensitive), ``*`` wildcards, or ``re:`` full-match regex. DNs are
    compared as normalised full DNs. A refused regex never matches (and is refused
    when saved, so this only happens with data written behind the admin pages' back).
    """
    if not isinstance(pattern, str) or not isinstance(actual, str):
        return False
    pattern = pattern.strip()
    if pattern.startswith(REGEX_PREFIX):
        try:
            compiled = compile_regex(pattern[len(REGEX_PREFIX):])
        except UnsafePattern:
            return False
        if len(actual) > MAX_REGEX_SUBJECT:
            return False
        return compiled.fullmatch(actual) is not None
    if not pattern:
        return False
    if _looks_like_dn(pattern) and _looks_like_dn(actual):
        want, have = normalise_dn(pattern), normalise_dn(actual)
        if "*" in pattern:
            return _wildcard(want).fullmatch(have) is not None
        return want == have
    if "*" in pattern:
        return _wildcard(_key(pattern)).fullmatch(_key(actual)) is not None
    return _key(pattern) == _key(actual)


def validate_pattern(pattern) -> str | None:
    """Why ``pattern`` cannot be used as a policy value, or None when it can."""
    if not isinstance(pattern, str) or not pattern.strip():
        return "enter a value"
    pattern = pattern.strip()
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"too long ({len(pattern)} characters; at most {MAX_PATTERN_LENGTH})"
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in pattern):
        return "contains control characters"
    if pattern.startswith(REGEX_PREFIX):
        try:
            compile_regex(pattern[len(REGEX_PREFIX):])
        except UnsafePattern as exc:
            return str(exc)
    return None


def parse_values(text) -> list[str]:
    """Policy values as typed: one per line, or comma separated. Lines that hold a DN
    (``cn=Finance,ou=groups,...``) or a regex (``re:...``) are kept whole, since commas
    belong to them. Blank entries and repeats are dropped."""
    if isinstance(text, (list, tuple)):
        lines = [str(v) for v in text]
    else:
        lines = str(text or "").splitlines()
    values: list[str] = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        parts = [line] if (line.startswith(REGEX_PREFIX) or "=" in line) else line.split(",")
        for part in parts:
            part = part.strip()
            if part and part not in values:
                values.append(part)
    return values


def group_name(dn: str) -> str:
    """The CN of a group DN (``cn=Finance,ou=groups`` → ``Finance``), or the value itself
    when it is not a DN or starts with another attribute."""
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except (LDAPException, ValueError, IndexError, TypeError):
        return dn
    if parts and parts[0][0].strip().lower() == "cn":
        return _unescape_dn_value(parts[0][1]).strip()
    return dn


def subject_values(subject: Subject, attribute: str) -> list[str]:
    """The user's values of ``attribute`` (case-insensitive name; options ignored)."""
    name = attribute.strip().lower()
    if name == "username":
        return [subject.username] if subject.username else []
    if name == "memberof" and subject.groups:
        return list(subject.groups)
    if name == "group_name":
        return [group_name(dn) for dn in subject.groups]
    for key, values in subject.attributes.items():
        if key.split(";")[0].lower() == name:
            return [v if isinstance(v, str) else str(v) for v in (values or [])]
    return []


def _quote_all(values: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def evaluate(rules: list[Rule], subject: Subject, default_profile_id: int | None) -> Decision:
    """Try ``rules`` top to bottom (by position); the first match chooses the profile,
    no match → ``default_profile_id``. Every rule tried leaves a Step in the trace."""
    trace: list[Step] = []
    for rule in sorted(rules, key=lambda r: (r.position, r.id or 0)):
        label = rule.label
        if not rule.enabled:
            trace.append(Step(rule.id, label, "disabled", reason="disabled, so skipped"))
            continue
        if rule.directory_id != subject.directory_id:
            where = rule.directory_name or (LOCAL_LABEL if rule.directory_id is None else f"directory {rule.directory_id}")
            mine = subject.directory_name or (LOCAL_LABEL if subject.directory_id is None else f"directory {subject.directory_id}")
            trace.append(Step(rule.id, label, "other directory",
                              reason=f"applies to users of {where}; this user was found in {mine}"))
            continue
        actual = subject_values(subject, rule.attribute)
        if not actual:
            trace.append(Step(rule.id, label, "attribute missing",
                              reason=f"the user has no {rule.attribute} value"))
            continue
        hit = next(((pattern, value) for value in actual for pattern in rule.values if match_value(pattern, value)), None)
        if hit is None:
            trace.append(Step(rule.id, label, "no match", compared=actual,
                              reason=f"{rule.attribute} {_quote_all(actual)} matches none of {_quote_all(rule.values)}"))
            continue
        pattern, value = hit
        trace.append(Step(rule.id, label, "matched", compared=actual, pattern=pattern,
                          reason=f"{rule.attribute} {value!r} matches {pattern!r}"))
        return Decision(rule.profile_id, rule.id, trace)
    return Decision(default_profile_id, None, trace)


# --------------------------------------------------------------------------
# Reading policies and deciding for a real user
# --------------------------------------------------------------------------


class PolicyError(Exception):
    """Why a policy cannot be saved; ``field`` names the form field."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def directory_label(directory: Directory | None) -> str:
    """How a directory is named to people; None is the local directory."""
    return LOCAL_LABEL if directory is None else directory.name


def policies_of(organisation: Organisation):
    """The organisation's policies, top to bottom, with their profile and directory
    joined (one query, however many policies)."""
    return (Policy.select(Policy, ApprovalProfile, Directory)
            .join(ApprovalProfile, on=(Policy.profile == ApprovalProfile.id))
            .switch(Policy).join(Directory, peewee.JOIN.LEFT_OUTER, on=(Policy.directory == Directory.id))
            .where(Policy.organisation == organisation).order_by(Policy.position, Policy.id))


def to_rule(policy: Policy) -> Rule:
    """The engine's view of a stored policy."""
    return Rule(
        id=policy.id, position=policy.position, name=policy.name or "", profile_id=policy.profile_id,
        directory_id=policy.directory_id, attribute=policy.attribute, values=list(policy.values or []),
        enabled=bool(policy.enabled), profile_name=policy.profile.name,
        directory_name=directory_label(policy.directory),
    )


def candidate_directories(default: ApprovalProfile | None, policies: list[Policy]) -> list[Directory | None]:
    """Where a user is looked up, in order (the first directory that knows them wins):

    1. the ``default`` profile's fallback directories, in their order (local accounts
       first when the profile lists them first) — the organisation's declared lookup order;
    2. then the directories named by enabled ``policies`` (as :func:`policies_of` gives
       them), top to bottom, that are not listed yet, so a policy for another directory
       can still match its users.

    With neither, the local directory."""
    seen: set[int | None] = set()
    ordered: list[Directory | None] = []

    def add(directory: Directory | None) -> None:
        key = None if directory is None else directory.id
        if key not in seen:
            seen.add(key)
            ordered.append(directory)

    if default is not None:
        for directory in directories_of(default):
            add(directory)
    for policy in policies:
        if policy.enabled:
            add(policy.directory)
    if not ordered:
        add(None)
    return ordered


@dataclass
class Approver:
    """Who would be emailed to approve a manager-approval sign-in, or why nobody."""

    mail: str | None
    source: str  # "manager" | "sponsor" | "fallback" | "none"
    manager: ManagerResult | None
    message: str


@dataclass
class Resolution:
    """Everything :func:`decide` found out about one sign-in identifier."""

    identifier: str
    searched: list[str] = field(default_factory=list)  # directory labels, in the order tried
    user: DirectoryUser | None = None
    directory: Directory | None = None
    subject: Subject | None = None
    decision: Decision | None = None
    profile: ApprovalProfile | None = None
    approver: Approver | None = None
    error: str | None = None  # a directory could not answer: nothing can be decided
    directory_down: bool = False  # the error is an LDAP directory's (not a local ambiguity)

    @property
    def found(self) -> bool:
        """True when a directory knows the user."""
        return self.user is not None

    @property
    def directory_name(self) -> str:
        """The label of the directory that knows the user."""
        return directory_label(self.directory)

    @property
    def mail(self) -> str | None:
        """The user's own mail (where a user-approval link goes)."""
        return self.user.mail if self.user else None

    @property
    def matched_policy(self) -> int | None:
        """The id of the policy that chose the profile (None: the default)."""
        return self.decision.matched_rule_id if self.decision else None


def subject_for(user: DirectoryUser, directory: Directory | None) -> Subject:
    """The engine's view of a directory user; ``mail`` and ``department`` are always
    there under those names, whatever the directory's attribute is called."""
    attributes = {k: list(v) for k, v in (user.attributes or {}).items()}
    lowered = {k.split(";")[0].lower() for k in attributes}
    if user.mail and "mail" not in lowered:
        attributes["mail"] = [user.mail]
    if user.department and "department" not in lowered:
        attributes["department"] = [user.department]
    return Subject(directory_id=user.directory_id, username=user.username, attributes=attributes,
                   groups=list(user.groups or []), directory_name=directory_label(directory))


def approver_for(profile: ApprovalProfile, user: DirectoryUser, directory: Directory | None) -> Approver:
    """The approval-email recipient of a manager profile: the LDAP manager's mail, the
    sponsor of a local user, else the profile's fallback approver; or why there is none."""
    manager = resolve_manager(None if user.source == "local" else directory, user)
    if manager.found:
        return Approver(manager.mail, "sponsor" if user.source == "local" else "manager", manager, manager.message)
    if profile.fallback_approver:
        return Approver(profile.fallback_approver, "fallback", manager,
                        f"{manager.message}; the profile's fallback approver {profile.fallback_approver} is used")
    return Approver(None, "none", manager,
                    f"{manager.message}, and the profile {profile.name} has no fallback approver: the sign-in cannot be approved")


def decide(organisation: Organisation, identifier: str) -> Resolution:
    """Find the user behind ``identifier`` and choose their approval profile — the one
    code path of sign-in and of the policy tester.

    The user is looked up in :func:`candidate_directories` order; a directory that
    cannot answer stops the lookup with ``error`` set (an outage must not turn into
    "try the next directory" and a weaker profile). Then the policies are evaluated;
    for a manager profile the approver is resolved. Nothing is sent or written.
    """
    resolution = Resolution(identifier=identifier if isinstance(identifier, str) else "")
    if valid_identifier(identifier) is None:
        resolution.error = "enter a username or email (not empty, at most 256 characters, no control characters)"
        return resolution
    default = default_profile(organisation)
    stored = list(policies_of(organisation))
    for directory in candidate_directories(default, stored):
        resolution.searched.append(directory_label(directory))
        try:
            user = find_local_user(organisation, identifier) if directory is None else find_user(directory, identifier)
        except DirectoryError as exc:
            resolution.error = f"{directory_label(directory)}: {exc}"
            resolution.directory_down = directory is not None
            return resolution
        if user is not None:
            resolution.user, resolution.directory = user, directory
            break
    if resolution.user is None:
        return resolution
    resolution.subject = subject_for(resolution.user, resolution.directory)
    resolution.decision = evaluate([to_rule(p) for p in stored], resolution.subject, default.id if default else None)
    chosen = resolution.decision.profile_id
    if chosen is not None:  # the default or a policy's profile, all read already
        known = {p.id: p for p in [default, *(policy.profile for policy in stored)] if p is not None}
        resolution.profile = known.get(chosen) or ApprovalProfile.get_or_none(ApprovalProfile.id == chosen)
    if resolution.profile is not None and resolution.profile.kind == "manager":
        resolution.approver = approver_for(resolution.profile, resolution.user, resolution.directory)
    return resolution


# --------------------------------------------------------------------------
# Writes (admin pages)
# --------------------------------------------------------------------------


def canonical_attribute(name) -> str:
    """The stored spelling of an attribute: pseudo-attributes normalised; raises PolicyError."""
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name:
        raise PolicyError("enter an attribute, like department or memberOf", "attribute")
    for pseudo in PSEUDO_ATTRIBUTES:
        if name.lower() == pseudo.lower():
            return pseudo
    if len(name) > 64 or not valid_attribute_name(name):
        raise PolicyError(f"{name!r} is not an attribute name (letters, digits and hyphens, starting with a letter)",
                          "attribute")
    return name


def value_errors(values: list[str]) -> list[str]:
    """One message per unusable value, naming the value."""
    return [f"{value!r}: {message}" for value in values if (message := validate_pattern(value))]


def save_policy(organisation: Organisation, policy: Policy | None, values: dict, *, actor: str) -> Policy:
    """Create (``policy`` None, added at the bottom) or update a policy.

    ``values``: ``profile`` (id), ``directory`` (id, or None / "" / "local" for local
    accounts), ``attribute``, ``values`` (list or text, see :func:`parse_values`),
    ``name``, ``enabled``. Raises PolicyError naming the field."""
    profile = None
    try:
        profile_id = int(values.get("profile"))
    except (TypeError, ValueError):
        profile_id = None
    if profile_id is not None:
        profile = ApprovalProfile.get_or_none((ApprovalProfile.id == profile_id) & (ApprovalProfile.organisation == organisation))
    if profile is None:
        raise PolicyError("choose one of this organisation's approval profiles", "profile")
    raw_directory = values.get("directory")
    directory = None
    if raw_directory not in (None, "", "local"):
        try:
            directory = Directory.get_or_none((Directory.id == int(raw_directory)) & (Directory.organisation == organisation))
        except (TypeError, ValueError):
            directory = None
        if directory is None:
            raise PolicyError("choose one of this organisation's directories, or local accounts", "directory")
    allowed = directories_of(profile)
    if (None if directory is None else directory.id) not in [None if d is None else d.id for d in allowed]:
        listed = ", ".join(directory_label(d) for d in allowed) or "none yet"
        raise PolicyError(
            f"{directory_label(directory)} is not one of the fallback directories of the approval profile "
            f"{profile.name} ({listed}): add it there, or choose one of those",
            "directory",
        )
    attribute = canonical_attribute(values.get("attribute"))
    patterns = parse_values(values.get("values"))
    if not patterns:
        raise PolicyError("enter at least one value: exact, with * wildcards, or re: followed by a regular expression",
                          "values")
    if len(patterns) > MAX_VALUES:
        raise PolicyError(f"too many values ({len(patterns)}; at most {MAX_VALUES})", "values")
    problems = value_errors(patterns)
    if problems:
        raise PolicyError("; ".join(problems), "values")
    name = (values.get("name") or "").strip()
    if len(name) > 100:
        raise PolicyError("use at most 100 characters", "name")
    with db.atomic():
        creating = policy is None
        if creating:
            last = Policy.select().where(Policy.organisation == organisation).count()
            policy = Policy(organisation=organisation, position=last)
        policy.name = name
        policy.profile = profile
        policy.directory = directory
        policy.attribute = attribute
        policy.values = patterns
        policy.enabled = bool(values.get("enabled", True))
        policy.updated_at = utcnow()
        policy.save()
        audit.record(
            "policy.created" if creating else "policy.updated", actor=actor, organisation=organisation.slug,
            target=policy.name or f"policy {policy.id}",
            details={"profile": profile.name, "directory": directory_label(directory), "attribute": attribute,
                     "values": patterns, "enabled": policy.enabled, "position": policy.position},
        )
    return policy


def set_enabled(policy: Policy, enabled: bool, *, actor: str) -> Policy:
    """Turn a policy on or off."""
    with db.atomic():
        policy.enabled = bool(enabled)
        policy.updated_at = utcnow()
        policy.save()
        audit.record("policy.updated", actor=actor, organisation=policy.organisation.slug,
                     target=policy.name or f"policy {policy.id}", details={"enabled": policy.enabled})
    return policy


def delete_policy(policy: Policy, *, actor: str) -> None:
    """Delete a policy; the ones below move up."""
    organisation = policy.organisation
    with db.atomic():
        policy.delete_instance()
        ordering.renumber(list(policies_of(organisation)))
        audit.record("policy.deleted", actor=actor, organisation=organisation.slug,
                     target=policy.name or f"policy {policy.id}",
                     details={"attribute": policy.attribute, "values": list(policy.values or [])})


def move_policy(policy: Policy, direction: str, *, actor: str) -> bool:
    """Move a policy one place up or down; False when it is already at that end."""
    organisation = policy.organisation
    moved = ordering.move(Policy.select().where(Policy.organisation == organisation), policy, direction)
    if moved:
        audit.record("policy.moved", actor=actor, organisation=organisation.slug,
                     target=policy.name or f"policy {policy.id}", details={"direction": direction})
    return moved


def reorder_policies(organisation: Organisation, ordered_ids: list[int], *, actor: str) -> None:
    """Apply a complete new order (drag and drop). ``ordered_ids`` must list exactly the
    organisation's policies; otherwise PolicyError and nothing changes."""
    try:
        ordering.reorder(Policy.select().where(Policy.organisation == organisation), list(ordered_ids))
    except ValueError as exc:
        raise PolicyError(str(exc)) from None
    audit.record("policy.moved", actor=actor, organisation=organisation.slug, target="policies",
                 details={"order": list(ordered_ids)})


def picker_values(organisation: Organisation, directory: Directory | None, attribute: str, limit: int = 200) -> list[str]:
    """Real values of ``attribute`` in ``directory`` for the value picker (raises
    DirectoryError or PolicyError with a readable message)."""
    attribute = canonical_attribute(attribute)
    name = attribute.lower()
    if directory is None:
        accounts = Account.select().where((Account.organisation == organisation) & (Account.source == "local"))
        if name == "username":
            values = [a.username for a in accounts.order_by(Account.username).limit(limit)]
        elif name == "mail":
            values = [a.email for a in accounts.order_by(Account.email).limit(limit) if a.email]
        else:
            raise PolicyError(f"local accounts have no {attribute} attribute; use username or mail", "attribute")
        return values
    if name in ("memberof", "group_name"):
        groups = attribute_values(directory, None, directory.group_attribute, limit)
        return sorted({group_name(g) for g in groups}, key=str.casefold) if name == "group_name" else groups
    if name == "username":
        return attribute_values(directory, None, (directory.login_attributes or ["uid"])[0], limit)
    if name == "mail":
        return attribute_values(directory, None, directory.mail_attribute, limit)
    if name == "department":
        for candidate in ("department", "departmentNumber", "ou"):
            found = attribute_values(directory, None, candidate, limit)
            if found:
                return found
        return []
    return attribute_values(directory, None, attribute, limit)
