"""LDAP directories through ldap3: connections, user lookups, managers and groups.

This module owns how a ``Directory`` row becomes an ldap3 connection (failover across the
ordered server URLs, TLS, timeouts), a process-wide cache of bound service connections,
and every read Gatehouse makes from a directory: finding a user by a login attribute,
resolving the manager's mail, group membership (nested too), the values of one attribute
for the policy value picker, the admin "Look up user" report and binding as a user. The
built-in local directory (``Account`` rows with source ``local``) answers the same
questions through :func:`find_local_user`.

Data problems (a dangling manager DN, a manager loop, hostile input) are answers, never
exceptions; an unreachable or misconfigured directory is a :class:`DirectoryError` with a
message a person can read.
"""

from __future__ import annotations

import hashlib
import json
import re
import ssl
import threading
import time
import unicodedata
from dataclasses import dataclass, field

import ldap3
from ldap3.core.exceptions import LDAPCommunicationError, LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn
from peewee import fn

from models import Account, Directory, Organisation

from . import crypto

MAX_IDENTIFIER_LENGTH = 256
# AD's LDAP_MATCHING_RULE_IN_CHAIN: the server walks nested groups itself.
IN_CHAIN_RULE = "1.2.840.113556.1.4.1941"
# How many levels of nested groups the portable walk follows; real group trees are shallow
# and a cycle (A member of B member of A) must not spin forever.
MAX_GROUP_DEPTH = 10
# Filters with hundreds of alternatives are slow on some servers; walk in slices.
_FILTER_CHUNK = 50
PAGE_SIZE = 100
_PAGED_OID = "1.2.840.113556.1.4.319"
# 2,000 pages of 100 is a very large directory; past that the picker has seen enough.
_MAX_PAGES = 2000
_AMBIGUITY_LIMIT = 5
# Result codes meaning "this connection/server is unusable now, try another one".
_DEAD_RESULTS = {"busy", "unavailable", "serverDown"}
_ATTRIBUTE_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)+)(?:;[A-Za-z0-9-]+)*$")
_DEPARTMENT_ATTRIBUTES = ("department", "departmentNumber", "ou")
_NAME_ATTRIBUTES = ("cn", "displayName")
# Searched by the users page too: a surname finds "Alice Adams" by "Adams".
_SEARCHED_NAME_ATTRIBUTES = (*_NAME_ATTRIBUTES, "sn")
_ID_ATTRIBUTES = ("entryUUID", "objectGUID")


class DirectoryError(Exception):
    """A directory could not answer: unreachable, bind refused, ambiguous user, ...

    ``str(error)`` is a person-readable sentence, safe to show an administrator.
    """


@dataclass
class ConnectionCheck:
    """The result of trying a directory: which server answered, bind outcome, time."""

    ok: bool
    server: str = ""
    message: str = ""
    milliseconds: float = 0.0


@dataclass
class DirectoryUser:
    """A user as a directory (LDAP or the local one) describes them."""

    directory_id: int | None  # None for the local directory
    source: str  # "ldap" | "local"
    dn: str | None
    username: str  # the value of the login attribute that matched (or Account.username)
    unique_id: str | None  # entryUUID / objectGUID (hex) when available
    display_name: str
    mail: str | None
    manager_dn: str | None
    department: str | None
    groups: list[str] = field(default_factory=list)  # group DNs
    attributes: dict[str, list[str]] = field(default_factory=dict)
    # The local directory's Account row itself, so a sign-in need not look it up again.
    account: Account | None = field(default=None, repr=False, compare=False)


@dataclass
class ManagerResult:
    """Who approves for a user, or why nobody can."""

    status: str  # "found" | "no_manager" | "not_found" | "no_mail" | "loop" | "error"
    dn: str | None = None
    mail: str | None = None
    display_name: str | None = None
    message: str = ""

    @property
    def found(self) -> bool:
        """True when an approver address is known."""
        return self.status == "found"


@dataclass
class LookupReport:
    """What the admin "Look up user" button shows."""

    identifier: str
    user: DirectoryUser | None = None
    manager: ManagerResult | None = None
    missing: list[str] = field(default_factory=list)  # configured attribute names absent on the entry
    milliseconds: float = 0.0
    error: str | None = None


# --------------------------------------------------------------------------
# Servers and connections
# --------------------------------------------------------------------------


def _tls(directory: Directory) -> ldap3.Tls | None:
    if directory.tls_mode == "none":
        return None
    return ldap3.Tls(
        validate=ssl.CERT_REQUIRED if directory.verify_certificate else ssl.CERT_NONE,
        ca_certs_file=directory.ca_file or None,
        version=ssl.PROTOCOL_TLS_CLIENT,
    )


def servers(directory: Directory) -> list[ldap3.Server]:
    """The directory's servers in the configured order."""
    tls = _tls(directory)
    return [
        ldap3.Server(
            url,
            use_ssl=url.lower().startswith("ldaps://"),
            tls=tls,
            connect_timeout=directory.connect_timeout,
            get_info=ldap3.NONE,
        )
        for url in directory.servers
    ]


def bind_password(directory: Directory) -> str:
    """The decrypted bind password ('' when none is stored)."""
    return crypto.decrypt(directory.bind_password_encrypted) if directory.bind_password_encrypted else ""


def _status(value) -> bool:
    """ldap3 answers a bool, or (status, result, response, request) with SAFE_SYNC."""
    return bool(value[0]) if isinstance(value, tuple) else bool(value)


def _reason(exc: BaseException) -> str:
    """A short, readable reason for a connection failure (ldap3 nests reprs in messages)."""
    text = str(exc)
    low = text.lower()
    if "refused" in low:
        return "connection refused"
    if "timed out" in low or "timeout" in low:
        return "timed out"
    if "name or service not known" in low or "getaddrinfo" in low or "nodename nor servname" in low:
        return "host name not found"
    if "certificate_verify_failed" in low or "certificate verify failed" in low:
        return "server certificate not trusted"
    if "wrong version number" in low or "unknown protocol" in low:
        return "TLS handshake failed (is this a TLS port?)"
    if "unreachable" in low:
        return "network unreachable"
    match = re.search(r"'([^']+)'", text)
    return (match.group(1) if match else text).strip()[:200] or type(exc).__name__


class _Unreachable(LDAPException):
    """No configured server could be opened; ``failures`` lists (url, reason)."""

    def __init__(self, failures: list[tuple[str, str]]):
        self.failures = failures
        super().__init__("; ".join(f"{url}: {reason}" for url, reason in failures) or "no server is configured")


def _open_first(directory: Directory, user: str | None, password: str | None, strategy=ldap3.SYNC) -> ldap3.Connection:
    """Open (and StartTLS) a connection to the first server that answers, unbound."""
    failures = []
    for server in servers(directory):
        conn = ldap3.Connection(
            server,
            user=user or None,
            password=password or None,
            receive_timeout=directory.receive_timeout,
            raise_exceptions=False,
            auto_bind=ldap3.AUTO_BIND_NONE,
            client_strategy=strategy,
        )
        try:
            conn.open()
            if directory.tls_mode == "starttls" and not _status(conn.start_tls()):
                raise LDAPException(f"StartTLS refused: {(conn.result or {}).get('description', '')}")
            return conn
        except (LDAPException, OSError) as exc:
            try:
                conn.unbind()
            except (LDAPException, OSError):
                pass  # the socket is already gone; nothing to release
            failures.append((server.name, _reason(exc)))
    raise _Unreachable(failures)


def open_service_connection(directory: Directory) -> ldap3.Connection:
    """Open a connection as the service account to the first server that answers.

    Failover is done here rather than with ldap3's ServerPool, which sleeps ten seconds
    between rounds when every server is down. Raises LDAPException / OSError when none
    answers (the message names each server and why). The connection is opened and
    secured (StartTLS when configured) but not yet bound.
    """
    return _open_first(directory, directory.bind_dn or None, bind_password(directory) or None)


def check_connection(directory: Directory) -> ConnectionCheck:
    """Connect (with failover), secure and bind; say which server answered and how fast."""
    started = time.perf_counter()
    try:
        conn = open_service_connection(directory)
        bound = conn.bind()
        elapsed = (time.perf_counter() - started) * 1000
        server = conn.server.name
        result = conn.result or {}
        conn.unbind()
    except (LDAPException, OSError, crypto.SecretUnreadable) as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return ConnectionCheck(ok=False, message=f"no server answered: {exc}", milliseconds=elapsed)
    if not bound:
        return ConnectionCheck(
            ok=False, server=server, milliseconds=elapsed,
            message=f"server reached but bind refused: {result.get('description', 'unknown')} {result.get('message', '')}".strip(),
        )
    return ConnectionCheck(ok=True, server=server, message="bind succeeded", milliseconds=elapsed)


# ---- the process-wide cache of bound service connections -------------------

_cache: dict[int | None, tuple[str, ldap3.Connection]] = {}
_cache_lock = threading.Lock()
_connect_locks: dict[int | None, threading.Lock] = {}
# Per connection fingerprint: True when the server honours the in-chain rule, False when
# it was seen to ignore it (OpenLDAP), absent while unknown.
_chain_rule: dict[str, bool] = {}


class _Dead(Exception):
    """The cached connection cannot be used any more; reconnect and retry once."""


def _fingerprint(directory: Directory) -> str:
    """Everything that shapes the connection, so an edited directory gets a new one."""
    settings = [
        directory.id, list(directory.servers or []), directory.tls_mode, directory.ca_file,
        bool(directory.verify_certificate), directory.bind_dn, directory.bind_password_encrypted,
        directory.connect_timeout, directory.receive_timeout,
    ]
    return hashlib.sha256(json.dumps(settings, default=str).encode()).hexdigest()


def _close(conn: ldap3.Connection) -> None:
    try:
        conn.unbind()
    except (LDAPException, OSError):
        pass  # a dead socket has nothing left to close


def reset_connections() -> None:
    """Close every cached service connection (tests; an admin saving a directory)."""
    with _cache_lock:
        entries = list(_cache.values())
        _cache.clear()
        _chain_rule.clear()
    for _fp, conn in entries:
        _close(conn)


def cached_connection(directory: Directory) -> ldap3.Connection | None:
    """The cached, bound service connection for ``directory`` if there is a current one."""
    with _cache_lock:
        entry = _cache.get(directory.id)
    if entry and entry[0] == _fingerprint(directory):
        return entry[1]
    return None


def _bind_service(directory: Directory) -> ldap3.Connection:
    """A fresh, bound SAFE_SYNC service connection (failover across servers)."""
    try:
        password = bind_password(directory)
    except crypto.SecretUnreadable as exc:
        raise DirectoryError("the stored bind password cannot be decrypted (was the secret key changed?)") from exc
    if directory.bind_dn and not password:
        # That would be an unauthenticated bind, which servers accept as anonymous.
        raise DirectoryError("a bind DN is configured without a bind password")
    try:
        conn = _open_first(directory, directory.bind_dn or None, password or None, strategy=ldap3.SAFE_SYNC)
    except _Unreachable as exc:
        raise DirectoryError(f"no LDAP server answered ({exc})") from None
    try:
        outcome = conn.bind(read_server_info=False)
    except (LDAPException, OSError) as exc:
        _close(conn)
        raise DirectoryError(f"{conn.server.name} failed during bind: {_reason(exc)}") from None
    result = outcome[1] if isinstance(outcome, tuple) else (conn.result or {})
    if not _status(outcome):
        _close(conn)
        detail = (result or {}).get("message") or ""
        description = (result or {}).get("description") or "unknown reason"
        raise DirectoryError(f"bind refused: {description}" + (f" ({detail})" if detail else "") + f" on {conn.server.name}")
    return conn


def _service_connection(directory: Directory) -> ldap3.Connection:
    """The cached bound connection, connecting (once, per directory) when needed."""
    fingerprint = _fingerprint(directory)
    with _cache_lock:
        entry = _cache.get(directory.id)
        if entry and entry[0] == fingerprint and not entry[1].closed:
            return entry[1]
        lock = _connect_locks.setdefault(directory.id, threading.Lock())
    # One thread connects while the others wait for its connection instead of each
    # opening their own: a burst of sign-ins after a restart must not storm the server.
    with lock:
        with _cache_lock:
            entry = _cache.get(directory.id)
            if entry and entry[0] == fingerprint and not entry[1].closed:
                return entry[1]
            stale = entry[1] if entry else None
            if entry:
                del _cache[directory.id]
        if stale is not None:
            _close(stale)
        conn = _bind_service(directory)
        with _cache_lock:
            _cache[directory.id] = (fingerprint, conn)
        return conn


def _discard(directory: Directory, conn: ldap3.Connection) -> None:
    with _cache_lock:
        entry = _cache.get(directory.id)
        if entry and entry[1] is conn:
            del _cache[directory.id]
    _close(conn)


def _with_connection(directory: Directory, operation):
    """Run ``operation(conn)`` on the cached connection; reconnect once if it is dead.

    A cached connection dies silently when a server restarts or an idle timeout (AD's
    MaxConnIdleTime) closes it; that must cost one reconnect, not a failed sign-in.
    """
    if directory.id is None:
        # Settings being tried before they are saved: nothing to cache them under.
        conn = _bind_service(directory)
        try:
            return operation(conn)
        except (_Dead, LDAPException, OSError) as exc:
            raise DirectoryError(f"LDAP error from {conn.server.name}: {_reason(exc)}") from None
        finally:
            _close(conn)
    for attempt in (1, 2):
        conn = _service_connection(directory)
        try:
            return operation(conn)
        except (_Dead, LDAPCommunicationError, OSError) as exc:
            _discard(directory, conn)
            if attempt == 2:
                raise DirectoryError(f"the LDAP connection to {conn.server.name} failed: {_reason(exc)}") from None
        except LDAPException as exc:
            raise DirectoryError(f"LDAP error from {conn.server.name}: {_reason(exc)}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _search(conn: ldap3.Connection, base: str, search_filter: str, scope=ldap3.SUBTREE,
            attributes=None, size_limit: int = 0, paged_size: int | None = None,
            paged_cookie=None) -> tuple[dict, list[dict]]:
    """One search on a SAFE_SYNC connection: (result, entries), raising _Dead when dead."""
    _ok, result, response, _request = conn.search(
        base, search_filter, search_scope=scope, attributes=attributes or ["1.1"], size_limit=size_limit,
        paged_size=paged_size, paged_cookie=paged_cookie,
    )
    result = result or {}
    if result.get("description") in _DEAD_RESULTS:
        raise _Dead(result.get("description"))
    entries = [item for item in (response or []) if item.get("type") == "searchResEntry"]
    return result, entries


# --------------------------------------------------------------------------
# Values and DNs
# --------------------------------------------------------------------------


def valid_identifier(identifier) -> str | None:
    """The identifier to search for, or None when it must not reach a directory.

    Empty, overlong, NUL / control characters and strings that are not valid Unicode
    (lone surrogates) are refused here so hostile input never becomes a filter.
    """
    if not isinstance(identifier, str):
        return None
    value = identifier.strip()
    if not value or len(value) > MAX_IDENTIFIER_LENGTH:
        return None
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


def valid_attribute_name(name) -> bool:
    """True for an LDAP attribute description (name or OID, optional options)."""
    return isinstance(name, str) and bool(_ATTRIBUTE_NAME.match(name))


_HEX_PAIRS = re.compile(r"\\([0-9A-Fa-f]{2})")


def _unescape_dn_value(value: str) -> str:
    # Hex escapes may spell one multi-byte UTF-8 character (\C3\A9), so collect bytes.
    out = bytearray()
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            pair = value[i + 1:i + 3]
            if len(pair) == 2 and _HEX_PAIRS.match("\\" + pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out.extend(value[i + 1].encode("utf-8"))
            i += 2
            continue
        out.extend(ch.encode("utf-8"))
        i += 1
    return out.decode("utf-8", errors="replace")


def normalise_dn(dn: str) -> str | None:
    """A comparison key for a DN: attribute types lower-cased, values unescaped,
    case-folded and trimmed, multi-valued RDNs sorted. None when ``dn`` does not parse.

    ``CN=Doe\\, Jane,OU=Staff`` and slapd's ``cn=Doe\\2C Jane,ou=staff`` give one key.
    """
    if not isinstance(dn, str) or not dn.strip():
        return None
    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except (LDAPException, ValueError, IndexError):
        return None
    rdns, current = [], []
    for attr, value, separator in parts:
        current.append(f"{attr.strip().lower()}={_unescape_dn_value(value).strip().casefold()}")
        if separator != "+":
            rdns.append("+".join(sorted(current)))
            current = []
    if current:
        rdns.append("+".join(sorted(current)))
    # Escape the separators again so "cn=a\,b" and "cn=a,b=" cannot collide.
    return ",".join(rdn.replace("\\", "\\\\") for rdn in rdns)


def same_dn(a: str | None, b: str | None) -> bool:
    """Full-DN equality the way a directory compares DNs (never a prefix match)."""
    key_a, key_b = normalise_dn(a or ""), normalise_dn(b or "")
    return key_a is not None and key_a == key_b


def _text_values(raw_values) -> list[str]:
    values = []
    for raw in raw_values or []:
        if isinstance(raw, str):
            values.append(raw)
            continue
        try:
            values.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            # Binary attributes (objectGUID, photos) are shown as hex, capped so a photo
            # does not fill the lookup page.
            values.append(raw.hex() if len(raw) <= 64 else f"<binary, {len(raw)} bytes>")
    return values


def _get(attributes: dict[str, list[str]], name: str) -> list[str]:
    """Values of ``name`` from a dict keyed by attribute name, case-insensitively."""
    low = name.lower()
    for key, values in attributes.items():
        if key.lower() == low:
            return values
    return []


def _first(attributes: dict[str, list[str]], *names: str) -> str | None:
    for name in names:
        values = _get(attributes, name)
        if values:
            return values[0]
    return None


# --------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------


def _login_attributes(directory: Directory) -> list[str]:
    names = [n for n in (directory.login_attributes or []) if valid_attribute_name(n)]
    if not names:
        raise DirectoryError("no valid login attribute is configured for this directory")
    return names


def _requested_attributes(directory: Directory) -> list[str]:
    # memberOf (and other operational attributes such as entryUUID) only come back when
    # asked for by name; '*' alone would silently drop them.
    wanted = list(_login_attributes(directory))
    for name in (directory.mail_attribute, directory.manager_attribute, directory.group_attribute):
        if valid_attribute_name(name):
            wanted.append(name)
    wanted += [*_NAME_ATTRIBUTES, *_DEPARTMENT_ATTRIBUTES, *_ID_ATTRIBUTES, "*"]
    seen, unique = set(), []
    for name in wanted:
        if name.lower() not in seen:
            seen.add(name.lower())
            unique.append(name)
    return unique


def _unique_id(raw: dict) -> str | None:
    for name in _ID_ATTRIBUTES:
        for key, values in raw.items():
            if key.lower() == name.lower() and values:
                value = values[0]
                if name == "objectGUID" and isinstance(value, bytes):
                    return value.hex()
                return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return None


def _match_key(value: str) -> str:
    """Case-insensitive comparison key: NFC, case-folded, inner spaces collapsed."""
    return " ".join(unicodedata.normalize("NFC", value).casefold().split())


def _matched_login_value(directory: Directory, attributes: dict[str, list[str]], identifier: str) -> str | None:
    """The login attribute value equal to ``identifier`` (ignoring case), if any.

    The server's matching rules are looser than we want: slapd folds compatibility
    characters (NFKC), so "𝔞𝔩𝔦𝔠𝔢" or full-width "ａｌｉｃｅ" reach alice's entry. Such
    look-alikes are spoofing material for audit logs and approval mails, so an entry
    only counts when one of its login values really is the identifier.
    """
    wanted = _match_key(identifier)
    for name in _login_attributes(directory):
        for value in _get(attributes, name):
            if _match_key(value) == wanted:
                return value
    return None


def _user_from_entry(directory: Directory, entry: dict, identifier: str) -> DirectoryUser | None:
    raw = entry.get("raw_attributes") or {}
    attributes = {name: _text_values(values) for name, values in raw.items() if values}
    username = _matched_login_value(directory, attributes, identifier)
    if username is None:
        return None
    return DirectoryUser(
        directory_id=directory.id,
        source="ldap",
        dn=entry.get("dn"),
        username=username,
        unique_id=_unique_id(raw),
        display_name=_first(attributes, "displayName", "cn") or username,
        mail=_first(attributes, directory.mail_attribute),
        manager_dn=_first(attributes, directory.manager_attribute),
        department=_first(attributes, *_DEPARTMENT_ATTRIBUTES),
        groups=list(_get(attributes, directory.group_attribute)),
        attributes=attributes,
    )


def find_user(directory: Directory, identifier: str) -> DirectoryUser | None:
    """Find the one entry under ``base_dn`` whose login attribute equals ``identifier``.

    The value is escaped (RFC 4515) into ``(|(attr1=v)(attr2=v)...)``; hostile or
    malformed identifiers return None without a search, and an entry the server matched
    only through Unicode compatibility folding is not accepted. More than one match raises
    DirectoryError("ambiguous ...") rather than picking one. With ``nested_groups``
    ``groups`` also holds the groups reached through nesting.
    """
    value = valid_identifier(identifier)
    if value is None:
        return None
    escaped = escape_filter_chars(value)
    search_filter = "(|" + "".join(f"({name}={escaped})" for name in _login_attributes(directory)) + ")"
    attributes = _requested_attributes(directory)

    def run(conn):
        # A small limit proves ambiguity without reading a whole directory; a few more
        # than two leaves room for look-alike entries that _user_from_entry drops.
        result, entries = _search(conn, directory.base_dn, search_filter, attributes=attributes,
                                  size_limit=_AMBIGUITY_LIMIT)
        description = result.get("description")
        if description not in ("success", "sizeLimitExceeded") and not entries:
            if description == "noSuchObject":
                raise DirectoryError(f"the base DN {directory.base_dn!r} does not exist on {conn.server.name}")
            raise DirectoryError(f"user search failed: {description} {result.get('message', '')}".strip())
        users = [u for u in (_user_from_entry(directory, e, value) for e in entries) if u is not None]
        if len(users) > 1 or (users and description == "sizeLimitExceeded"):
            raise DirectoryError(
                f"ambiguous: more than one entry matches {value!r} "
                f"({'; '.join(e.get('dn', '') for e in entries)}); make the login attribute unique"
            )
        if not users:
            return None
        user = users[0]
        if directory.nested_groups and user.dn:
            user.groups = _expanded_groups(conn, directory, user)
        return user

    return _with_connection(directory, run)


def find_local_user(organisation: Organisation, identifier: str) -> DirectoryUser | None:
    """The built-in local directory: a local Account of ``organisation`` by username or
    email (email case-insensitively). The sponsor email plays the manager."""
    value = valid_identifier(identifier)
    if value is None:
        return None
    query = Account.select().where((Account.organisation == organisation) & (Account.source == "local"))
    account = query.where(Account.username == value).first()
    if account is None:
        matches = list(query.where(fn.LOWER(Account.email) == value.lower()).limit(2))
        if len(matches) > 1:
            raise DirectoryError(f"ambiguous: more than one local account has the email {value!r}")
        account = matches[0] if matches else None
    if account is None:
        return None
    account.organisation = organisation  # already loaded: no query when a caller reads it
    attributes = {
        "username": [account.username],
        "mail": [account.email] if account.email else [],
        "sponsor_email": [account.sponsor_email] if account.sponsor_email else [],
        "displayName": [account.display_name] if account.display_name else [],
        "role": [account.role],
        "status": [account.status],
    }
    return DirectoryUser(
        directory_id=None,
        source="local",
        dn=None,
        username=account.username,
        unique_id=str(account.id),
        display_name=account.display_name or account.username,
        mail=account.email or None,
        manager_dn=None,
        department=None,
        groups=[],
        attributes={k: v for k, v in attributes.items() if v},
        account=account,
    )


def bind_as_user(directory: Directory, user: DirectoryUser, password: str) -> bool:
    """Check a user's password by binding as their DN on a fresh (uncached) connection.

    An empty password returns False without contacting any server: LDAP treats a DN
    with an empty password as an *unauthenticated* bind, which some servers accept.
    Wrong password → False. Raises DirectoryError when no server answers, so an outage
    is not mistaken for (and counted as) a wrong password.
    """
    if not isinstance(password, str) or not password or "\x00" in password:
        return False
    if user is None or user.source != "ldap" or not user.dn:
        return False
    try:
        conn = _open_first(directory, user.dn, password)
    except _Unreachable as exc:
        raise DirectoryError(f"no LDAP server answered ({exc})") from None
    try:
        return bool(conn.bind(read_server_info=False))
    except (LDAPException, OSError) as exc:
        raise DirectoryError(f"{conn.server.name} failed during bind: {_reason(exc)}") from None
    finally:
        _close(conn)


# --------------------------------------------------------------------------
# Managers
# --------------------------------------------------------------------------


def _read_entry(conn, dn: str, attributes: list[str]) -> dict | None:
    """The entry at ``dn`` (BASE search), or None when it does not exist / is no DN."""
    try:
        result, entries = _search(conn, dn, "(objectClass=*)", scope=ldap3.BASE, attributes=attributes)
    except (LDAPCommunicationError, _Dead):
        raise
    except LDAPException:
        return None  # not a DN at all: for our callers that is "points nowhere"
    if result.get("description") == "noSuchObject" or not entries:
        return None
    return entries[0]


def resolve_manager(directory: Directory | None, user: DirectoryUser, max_depth: int = 5) -> ManagerResult:
    """The user's manager and their mail, or why there is none. Never raises.

    The manager entry is read by a BASE search on the manager DN (escaped DNs work).
    The chain above is followed up to ``max_depth`` levels only to detect loops, since a
    loop means the data is broken and an approval could bounce between two people.
    A local user's manager is their sponsor email.
    """
    if user.source == "local":
        sponsor = _first(user.attributes, "sponsor_email")
        if sponsor:
            return ManagerResult("found", mail=sponsor, display_name=sponsor, message=f"sponsor {sponsor}")
        return ManagerResult("no_manager", message=f"{user.username} has no sponsor email")
    manager_dn = user.manager_dn or _first(user.attributes, directory.manager_attribute)
    if not manager_dn:
        return ManagerResult(
            "no_manager", message=f"{user.username} has no {directory.manager_attribute} attribute")
    if same_dn(manager_dn, user.dn):
        return ManagerResult("loop", dn=manager_dn, message=f"{user.username} is their own manager")
    wanted = [directory.mail_attribute, directory.manager_attribute, "displayName", "cn"]

    def run(conn):
        entry = _read_entry(conn, manager_dn, wanted)
        if entry is None:
            return ManagerResult("not_found", dn=manager_dn,
                                 message=f"the manager {manager_dn} does not exist in the directory")
        attrs = {k: _text_values(v) for k, v in (entry.get("raw_attributes") or {}).items() if v}
        name = _first(attrs, "displayName", "cn")
        mail = _first(attrs, directory.mail_attribute)
        chain = [user.dn or "", entry.get("dn") or manager_dn]
        seen = {normalise_dn(dn) for dn in chain}
        above = _first(attrs, directory.manager_attribute)
        for _level in range(max(0, max_depth - 1)):
            if not above:
                break
            key = normalise_dn(above)
            if key in seen:
                return ManagerResult("loop", dn=manager_dn, mail=mail, display_name=name,
                                     message="manager loop: " + " → ".join(chain + [above]))
            seen.add(key)
            chain.append(above)
            higher = _read_entry(conn, above, [directory.manager_attribute])
            if higher is None:
                break  # a broken link higher up is not this approval's problem
            higher_attrs = {k: _text_values(v) for k, v in (higher.get("raw_attributes") or {}).items() if v}
            above = _first(higher_attrs, directory.manager_attribute)
        if not mail:
            return ManagerResult("no_mail", dn=manager_dn, display_name=name,
                                 message=f"the manager {name or manager_dn} has no {directory.mail_attribute}")
        return ManagerResult("found", dn=entry.get("dn") or manager_dn, mail=mail, display_name=name,
                             message=f"manager {name or manager_dn} <{mail}>")

    try:
        return _with_connection(directory, run)
    except DirectoryError as exc:
        return ManagerResult("error", dn=manager_dn, message=str(exc))


# --------------------------------------------------------------------------
# Groups
# --------------------------------------------------------------------------


def _parent_groups(conn, directory: Directory, dns: list[str]) -> list[str]:
    """Groups under base_dn that list any of ``dns`` as a ``member``."""
    found = []
    for start in range(0, len(dns), _FILTER_CHUNK):
        chunk = dns[start:start + _FILTER_CHUNK]
        search_filter = "(|" + "".join(f"(member={escape_filter_chars(dn)})" for dn in chunk) + ")"
        _result, entries = _search(conn, directory.base_dn, search_filter)
        found += [e["dn"] for e in entries if e.get("dn")]
    return found


def _walk_groups(conn, directory: Directory, user: DirectoryUser, target: str | None = None) -> list[str]:
    """Every group reaching ``user`` through ``member`` links, breadth first.

    Portable stand-in for the in-chain matching rule (OpenLDAP lacks it). Walks upwards
    from the user, because a user belongs to few groups while a group can have thousands
    of members. Stops early when ``target`` is reached; ``MAX_GROUP_DEPTH`` bounds cycles.
    """
    groups: dict[str, str] = {}
    for dn in user.groups:  # memberOf already known, so servers without it still work
        key = normalise_dn(dn)
        if key:
            groups.setdefault(key, dn)
    target_key = normalise_dn(target) if target else None
    frontier = [user.dn] + list(groups.values())
    for _depth in range(MAX_GROUP_DEPTH):
        if target_key and target_key in groups:
            break
        new = []
        for dn in _parent_groups(conn, directory, frontier):
            key = normalise_dn(dn)
            if key and key not in groups:
                groups[key] = dn
                new.append(dn)
        if not new:
            break
        frontier = new
    return list(groups.values())


def _chain_search(conn, directory: Directory, base: str, user_dn: str, scope) -> list[str] | None:
    """Groups found with the in-chain rule, or None when the server rejected it."""
    search_filter = f"(member:{IN_CHAIN_RULE}:={escape_filter_chars(user_dn)})"
    try:
        result, entries = _search(conn, base, search_filter, scope=scope)
    except (LDAPCommunicationError, _Dead):
        raise
    except LDAPException:
        return None
    if result.get("description") != "success":
        return None
    return [e["dn"] for e in entries if e.get("dn")]


def _expanded_groups(conn, directory: Directory, user: DirectoryUser) -> list[str]:
    """Direct plus nested groups: the in-chain rule when the server honours it, else a walk."""
    fingerprint = _fingerprint(directory)
    direct = {normalise_dn(g): g for g in user.groups if normalise_dn(g)}
    if _chain_rule.get(fingerprint) is not False:
        chained = _chain_search(conn, directory, directory.base_dn, user.dn, ldap3.SUBTREE)
        if chained is not None:
            keys = {normalise_dn(g) for g in chained}
            # A server that ignores the rule answers "success, nothing": only trust the
            # answer when it at least contains the direct groups we already know.
            if set(direct) <= keys and (chained or not direct):
                if chained:
                    _chain_rule[fingerprint] = True
                merged = dict(direct)
                for dn in chained:
                    merged.setdefault(normalise_dn(dn), dn)
                return list(merged.values())
        _chain_rule[fingerprint] = False
    return _walk_groups(conn, directory, user)


def is_member(directory: Directory, user: DirectoryUser, group_dn: str) -> bool:
    """Whether ``user`` is in ``group_dn``, comparing full normalised DNs (never prefixes).

    With ``nested_groups`` also membership through nested groups: AD's in-chain rule on
    the group entry, falling back to a breadth-first walk of ``member`` links when the
    server ignores or rejects the rule (OpenLDAP answers "success, no entries").
    DirectoryError propagates: "cannot tell" must not read as "not a member".
    """
    target = normalise_dn(group_dn)
    if target is None or user is None:
        return False
    if any(normalise_dn(g) == target for g in user.groups):
        return True
    if not directory.nested_groups or user.source != "ldap" or not user.dn:
        return False
    fingerprint = _fingerprint(directory)

    def run(conn):
        known = _chain_rule.get(fingerprint)
        chained = None
        if known is not False:
            chained = _chain_search(conn, directory, group_dn, user.dn, ldap3.BASE)
            if chained:
                _chain_rule[fingerprint] = True
                return True
            if chained is not None and known is True:
                return False  # the server is known to honour the rule: trust its "no"
        member = any(normalise_dn(g) == target for g in _walk_groups(conn, directory, user, target=group_dn))
        if member or chained is None:
            # Rejected outright, or "no" where the walk says yes: the server ignores the
            # rule, so later checks skip straight to the walk.
            _chain_rule[fingerprint] = False
        return member

    return _with_connection(directory, run)


# --------------------------------------------------------------------------
# Attribute values and the admin lookup
# --------------------------------------------------------------------------


def attribute_values(directory: Directory, dn: str | None, attribute: str, limit: int = 200) -> list[str]:
    """Distinct values of ``attribute`` across the people under ``dn`` (default base_dn).

    For the policy value picker: a paged search (page size 100) so large directories do
    not hit the server's size limit; duplicates differing only in case are merged;
    sorted case-insensitively and capped at ``limit``.
    """
    if not valid_attribute_name(attribute):
        raise DirectoryError(f"{attribute!r} is not an attribute name")
    base = dn or directory.base_dn
    search_filter = f"(&(objectClass=person)({attribute}=*))"

    def run(conn):
        # The simple paged results control (RFC 2696) by hand rather than through
        # ldap3's paged_search helper, which swallows error results (a wrong base DN
        # would look like "no values").
        values: dict[str, str] = {}
        cookie = None
        for _page in range(_MAX_PAGES):
            result, entries = _search(conn, base, search_filter, attributes=[attribute],
                                      paged_size=PAGE_SIZE, paged_cookie=cookie)
            if result.get("description") not in ("success", "sizeLimitExceeded"):
                raise DirectoryError(
                    f"reading {attribute} values failed: {result.get('description')} {result.get('message', '')}".strip())
            for entry in entries:
                for name, raw in (entry.get("raw_attributes") or {}).items():
                    if name.split(";")[0].lower() == attribute.split(";")[0].lower():
                        for value in _text_values(raw):
                            values.setdefault(value.casefold(), value)
            cookie = ((result.get("controls") or {}).get(_PAGED_OID) or {}).get("value", {}).get("cookie")
            if not cookie:
                break
        return [values[key] for key in sorted(values)][:max(0, limit)]

    return _with_connection(directory, run)


def lookup(directory: Directory, identifier: str) -> LookupReport:
    """Everything the admin "Look up user" button shows; errors become ``report.error``."""
    started = time.perf_counter()
    report = LookupReport(identifier=identifier if isinstance(identifier, str) else "")
    try:
        user = find_user(directory, identifier)
    except DirectoryError as exc:
        report.error = str(exc)
        user = None
    if user is not None:
        report.user = user
        report.manager = resolve_manager(directory, user)
        if not user.mail:
            report.missing.append(directory.mail_attribute)
        if not user.manager_dn:
            report.missing.append(directory.manager_attribute)
        if not user.groups:
            report.missing.append(directory.group_attribute)
    elif report.error is None and valid_identifier(identifier) is None:
        report.error = "not a valid username or email (empty, too long or with control characters)"
    report.milliseconds = (time.perf_counter() - started) * 1000
    return report


# --------------------------------------------------------------------------
# Searching people (the admin users page)
# --------------------------------------------------------------------------

# Entries a search reads at most per directory, whatever the page size.
SEARCH_LIMIT = 200


def search_users(directory: Directory, query: str, limit: int = 50, page_size: int = 50) -> list[DirectoryUser]:
    """People under ``base_dn`` whose login attributes, mail, cn, displayName or surname
    (sn) start with ``query`` (case-insensitively, as the server compares), at most ``limit`` of them.

    The value is escaped (RFC 4515) before the ``*`` is appended, so ``*`` or ``)(`` in
    the query are literal. Results come through the simple paged results control
    (RFC 2696) in pages of ``page_size``; when enough entries are read the server is told
    to abandon the rest (a page size of 0 with the cookie). ``username`` is the entry's
    first login attribute that is not the mail attribute (else the mail). Raises
    DirectoryError when the directory cannot answer; hostile input returns [].
    """
    value = valid_identifier(query)
    if value is None or limit <= 0:
        return []
    limit = min(limit, SEARCH_LIMIT)
    logins = _login_attributes(directory)
    mail_attribute = directory.mail_attribute if valid_attribute_name(directory.mail_attribute) else "mail"
    searched: list[str] = []
    for name in [*logins, mail_attribute, *_SEARCHED_NAME_ATTRIBUTES]:
        if name.lower() not in {n.lower() for n in searched}:
            searched.append(name)
    prefix = escape_filter_chars(value) + "*"
    search_filter = ("(&(|(objectClass=person)(objectClass=user))(|"
                     + "".join(f"({name}={prefix})" for name in searched) + "))")
    wanted = [*searched, *_ID_ATTRIBUTES]
    if valid_attribute_name(directory.manager_attribute):
        wanted.append(directory.manager_attribute)
    username_attributes = [n for n in logins if n.lower() != mail_attribute.lower()] or logins

    def run(conn):
        users: list[DirectoryUser] = []
        cookie = None
        size = max(1, min(page_size, limit))
        for _page in range(_MAX_PAGES):
            result, entries = _search(conn, directory.base_dn, search_filter, attributes=wanted,
                                      paged_size=size, paged_cookie=cookie)
            description = result.get("description")
            if description not in ("success", "sizeLimitExceeded"):
                if description == "noSuchObject":
                    raise DirectoryError(f"the base DN {directory.base_dn!r} does not exist on {conn.server.name}")
                raise DirectoryError(f"user search failed: {description} {result.get('message', '')}".strip())
            for entry in entries:
                raw = entry.get("raw_attributes") or {}
                attributes = {name: _text_values(values) for name, values in raw.items() if values}
                username = _first(attributes, *username_attributes) or _first(attributes, *logins)
                if not username:
                    continue  # an entry nobody could sign in as
                users.append(DirectoryUser(
                    directory_id=directory.id, source="ldap", dn=entry.get("dn"), username=username,
                    unique_id=_unique_id(raw), display_name=_first(attributes, "displayName", "cn") or username,
                    mail=_first(attributes, mail_attribute),
                    manager_dn=_first(attributes, directory.manager_attribute), department=None,
                    attributes=attributes))
            cookie = ((result.get("controls") or {}).get(_PAGED_OID) or {}).get("value", {}).get("cookie")
            if not cookie or description == "sizeLimitExceeded":
                break
            if len(users) >= limit:
                # Tell the server we are done so it can drop the search's state.
                _search(conn, directory.base_dn, search_filter, attributes=["1.1"], paged_size=0, paged_cookie=cookie)
                break
        users.sort(key=lambda u: (u.username.casefold(), u.dn or ""))
        return users[:limit]

    return _with_connection(directory, run)
