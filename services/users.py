"""The admin users page: searching and paging accounts (and directory entries that have
no account yet), creating and editing local users, CSV import and export.

Search design. A search matches the *start* of the username, the email, the display
name, or the display name from its second or third word ("Smith" finds "John Smith"),
ignoring case (ASCII case on SQLite, whose LOWER() folds only ASCII). A prefix is one
range of an ordered index, ``LOWER(column) >= 'ab' AND LOWER(column) < 'ac'``, on indexes
``(organisation_id, expression)`` (migrations m0006, m0009), so the cost follows the
number of matches, not the number of accounts; a substring (``LIKE '%ab%'``) would read
every account on both databases.

Results come in streams, one per searched expression in that order — the username
matches by username, then the email matches that are not username matches by email, and
so on — each an ordered walk of its index, read only as far as the page needs; a page is
paged by keyset (``after`` = the stream, id and sort key of the last row), 50 to a page.
Managed organisations are queried one by one and merged, so a parent organisation's
admin pages through the children's users without sorting all of them. The prefix range
relies on code point order: SQLite's BINARY collation, and on PostgreSQL an explicit
``COLLATE "C"`` on the searched expression and its index, whatever collation the
database was created with.

Directory entries that never signed in have no account; when the source filter allows
directory users and a query is given, each directory of the managed organisations is
searched (paged LDAP search, ``services.directory.search_users``) and entries without an
account are shown after the accounts on the first page. An unreachable directory is a
note on the page, never an error.
"""

from __future__ import annotations

import base64
import csv
import heapq
import io
import unicodedata
from dataclasses import dataclass, field

import peewee
from peewee import fn

from models import ROLES, STATUSES, Account, AuditEvent, Directory, Organisation, db, is_postgres, utcnow
from models.account import NameFromWord

from . import access, accounts, audit
from . import directory as directory_service
from .accounts import EMAIL, USERNAME, AccountError

PAGE_SIZE = 50
MAX_CURSOR = 2400  # a 320-character email, as UTF-8 in base64, fits
MAX_QUERY = 100
DIRECTORY_LIMIT = 50
SOURCE_FILTERS = ("all", "local", "directory")
# CSV import limits: the form carries the file back for the confirmation, so it must stay
# well under the request size limit (MAX_CONTENT_LENGTH, 2 MB).
MAX_CSV_BYTES = 512 * 1024
MAX_CSV_ROWS = 5000
CSV_COLUMNS = ("username", "email", "display_name", "sponsor_email", "role")
REQUIRED_COLUMNS = ("username", "email")
EXPORT_COLUMNS = ("username", "email", "display_name", "sponsor_email", "role", "status", "source", "organisation",
                  "two_factor", "created_at", "last_sign_in_at")


def _printable(value: str) -> str:
    """``value`` without control characters and lone surrogates (a NUL is refused by
    PostgreSQL and means nothing in a name)."""
    return "".join(ch for ch in value if unicodedata.category(ch) not in ("Cc", "Cs"))


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value)


class UserError(AccountError):
    """A person-readable reason why a user cannot be created, changed or imported.

    ``errors`` maps a form field to its messages when the problem belongs to a field."""

    def __init__(self, message: str, errors: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.errors = errors or {}


# --------------------------------------------------------------------------
# Search and paging
# --------------------------------------------------------------------------


@dataclass
class Filters:
    """What the list shows: a query and the source / role / status filters."""

    query: str = ""
    source: str = "all"
    role: str = ""
    status: str = ""

    @classmethod
    def from_args(cls, args) -> Filters:
        """Filters from request arguments; unknown values fall back to "any"."""

        def text(name: str) -> str:
            value = args.get(name, "")
            return _printable(value).strip() if isinstance(value, str) else ""

        query = " ".join(text("q").split())[:MAX_QUERY]
        source = text("source")
        return cls(query=query, source=source if source in SOURCE_FILTERS else "all",
                   role=text("role") if text("role") in ROLES else "",
                   status=text("status") if text("status") in STATUSES else "")

    def as_args(self) -> dict:
        """The filters as URL arguments (only the ones set)."""
        args = {"q": self.query, "source": self.source if self.source != "all" else "", "role": self.role,
                "status": self.status}
        return {k: v for k, v in args.items() if v}

    @property
    def wants_directories(self) -> bool:
        """Whether directory entries without an account belong in the results."""
        return bool(self.query) and self.source in ("all", "directory") and not self.role and (
            self.status in ("", "active"))


@dataclass
class DirectoryHit:
    """A directory entry that matches the search and has no account yet."""

    directory: Directory
    organisation: Organisation
    username: str
    display_name: str
    mail: str | None
    unique_id: str | None
    dn: str | None


@dataclass
class Page:
    """One page of the users list."""

    accounts: list[Account]
    next_after: str | None = None
    directory_hits: list[DirectoryHit] = field(default_factory=list)
    directory_errors: list[str] = field(default_factory=list)
    directories_searched: int = 0


def _prefix_bounds(query: str) -> tuple[str, str | None]:
    """``[low, high)``: every string starting with ``query`` (lower-cased) lies in it."""
    low = query.lower()
    last = ord(low[-1])
    if last >= 0x10FFFF:
        return low, None
    return low, low[:-1] + chr(last + 1)


def _in_range(expression, bounds):
    low, high = bounds
    condition = expression >= low
    return condition if high is None else condition & (expression < high)


# The searched expressions in list order: username matches first, then email, then the
# display name, then the display name from its second word and from its third ("Smith"
# finds "John Smith" and "Mary Ann Smith").
STREAMS = ("username", "email", "display_name", "name_word2", "name_word3")


def _column(stream: int):
    name = STREAMS[stream]
    if name.startswith("name_word"):
        expression = NameFromWord(int(name[-1]))  # the expression of its index (models.account)
    else:
        expression = fn.LOWER(getattr(Account, name))
    if is_postgres():
        # A prefix is one range only in code-point order: under a collation that ignores
        # punctuation ("ann.smith" sorts as "annsmith") a search for "ann." would miss it.
        # The indexes are built with the same collation (migrations m0008, m0009).
        return peewee.NodeList((expression, peewee.SQL('COLLATE "C"')))
    return expression


def encode_after(account: Account) -> str:
    """The keyset cursor of ``account``: which stream it matched in, its id and its sort
    key (base64url: a name may hold any character, a tab or a colon included)."""
    key = base64.urlsafe_b64encode((account.sort_key or "").encode("utf-8")).decode("ascii")
    return f"{account.stream}:{account.id}:{key}"


def decode_after(value) -> tuple[int, str, int] | None:
    """``(stream, sort_key, id)`` from a cursor, or None when it is not one."""
    if not isinstance(value, str) or len(value) > MAX_CURSOR:
        return None
    parts = value.split(":", 2)
    if len(parts) != 3:
        return None
    try:
        stream, last_id = int(parts[0]), int(parts[1])
        key = base64.urlsafe_b64decode(parts[2].encode("ascii")).decode("utf-8")
    except ValueError:  # not numbers, not base64, not UTF-8
        return None
    return (stream, key, last_id) if 0 <= stream < len(STREAMS) else None


def _filtered(query: peewee.ModelSelect, filters: Filters) -> peewee.ModelSelect:
    if filters.source in ("local", "directory"):
        query = query.where(Account.source == filters.source)
    if filters.role:
        query = query.where(Account.role == filters.role)
    if filters.status:
        query = query.where(Account.status == filters.status)
    return query


def _organisation_page(organisation_id: int, filters: Filters, after, limit: int) -> list[Account]:
    """Up to ``limit`` accounts of one organisation, in list order, after ``after``.

    Without a query: by username. With one: the username matches by username, then the
    email matches (that are not username matches) by email, then the display name
    matches, then the later-word matches; each part is an ordered walk of its index,
    read only as far as the page needs."""
    first, key, last_id = after if after is not None else (0, None, None)
    if not filters.query and first != 0:
        return []
    bounds = _prefix_bounds(filters.query) if filters.query else None
    rows: list[Account] = []
    for stream in range(first, len(STREAMS) if bounds else 1):
        sort_key = _column(stream)
        query = Account.select(Account, sort_key.alias("sort_key"), peewee.Value(stream).alias("stream")).where(
            Account.organisation == organisation_id)
        if bounds:
            query = query.where(_in_range(sort_key, bounds))
            for earlier in range(stream):  # listed already, under an earlier column
                query = query.where(~_in_range(fn.COALESCE(_column(earlier), ""), bounds))
        query = _filtered(query, filters)
        if stream == first and key is not None:
            # ">=" first: the index range itself, then the tie on id (not an OR of two ranges).
            query = query.where((sort_key >= key) & ((sort_key > key) | (Account.id > last_id)))
        rows.extend(query.order_by(sort_key, Account.id).limit(limit - len(rows)))
        if len(rows) >= limit:
            break
    return rows


def search(organisation: Organisation, filters: Filters, *, after: str | None = None, limit: int = PAGE_SIZE,
           include_directories: bool = True) -> Page:
    """One page of the accounts an admin of ``organisation`` manages (it and the
    organisations below it), matching ``filters``; on the first page also the directory
    entries without an account (see the module docstring)."""
    organisation_ids = access.managed_organisation_ids(organisation)
    cursor = decode_after(after) if after else None
    per_organisation = [_organisation_page(org_id, filters, cursor, limit + 1) for org_id in organisation_ids]
    merged = heapq.merge(*per_organisation, key=lambda a: (a.stream, a.sort_key, a.id))
    rows = [account for _i, account in zip(range(limit + 1), merged)]
    names = {o.id: o for o in Organisation.select().where(Organisation.id.in_(organisation_ids))}
    for account in rows:
        account.organisation = names[account.organisation_id]  # no query per row
    page = Page(accounts=rows[:limit])
    if len(rows) > limit:
        page.next_after = encode_after(rows[limit - 1])
    if include_directories and cursor is None and filters.wants_directories:
        _add_directory_hits(page, organisation_ids, names, filters.query)
    return page


def _add_directory_hits(page: Page, organisation_ids: list[int], organisations: dict, query: str) -> None:
    directories = list(Directory.select().where(Directory.organisation.in_(organisation_ids))
                       .order_by(Directory.organisation, Directory.position, Directory.id))
    seen: set[tuple[int, str]] = set()
    for directory in directories:
        page.directories_searched += 1
        try:
            found = directory_service.search_users(directory, query, limit=DIRECTORY_LIMIT)
        except directory_service.DirectoryError as exc:
            page.directory_errors.append(f"{directory.name}: {exc}")
            continue
        if not found:
            continue
        # Entries that already have an account are listed as accounts (when they match).
        known = Account.select(Account.username, Account.external_id).where(
            (Account.organisation == directory.organisation_id) & (Account.source == "directory")
            & ((Account.directory == directory.id) | Account.directory.is_null())
            & (fn.LOWER(Account.username).in_([u.username.lower() for u in found])
               | Account.external_id.in_([u.unique_id for u in found if u.unique_id])))
        known_names = set()
        known_ids = set()
        for row in known:
            known_names.add(row.username.lower())
            if row.external_id:
                known_ids.add(row.external_id)
        for user in found:
            key = (directory.organisation_id, user.username.lower())
            if key in seen or user.username.lower() in known_names or (user.unique_id and user.unique_id in known_ids):
                continue
            seen.add(key)
            page.directory_hits.append(DirectoryHit(
                directory=directory, organisation=organisations[directory.organisation_id], username=user.username,
                display_name=user.display_name, mail=user.mail, unique_id=user.unique_id, dn=user.dn))
    page.directory_hits.sort(key=lambda h: (h.username.casefold(), h.directory.id))
    del page.directory_hits[DIRECTORY_LIMIT:]


def all_matching(organisation: Organisation, filters: Filters):
    """Every account matching ``filters`` in list order, a page at a time (for export)."""
    after = None
    while True:
        page = search(organisation, filters, after=after, limit=500, include_directories=False)
        yield from page.accounts
        if page.next_after is None:
            return
        if page.next_after == after:  # a cursor that does not move on would never end
            raise RuntimeError(f"the users list did not move past {after!r}")
        after = page.next_after


def managed_directory(organisation: Organisation, directory_id) -> Directory | None:
    """A directory of an organisation ``organisation``'s admins manage, else None."""
    try:
        directory_id = int(directory_id)
    except (TypeError, ValueError):
        return None
    return (Directory.select(Directory, Organisation).join(Organisation)
            .where((Directory.id == directory_id)
                   & (Directory.organisation.in_(access.managed_organisation_ids(organisation)))).first())


def recent_events(account_or_username, organisation_slug: str, limit: int = 10) -> list[AuditEvent]:
    """The newest audit events whose target is this user, in their organisation."""
    username = getattr(account_or_username, "username", account_or_username)
    return list(AuditEvent.select().where((AuditEvent.organisation == organisation_slug)
                                          & (AuditEvent.target == username))
                .order_by(AuditEvent.id.desc()).limit(limit))


def grantable_roles(actor_role: str | None) -> list[str]:
    """The roles someone acting as ``actor_role`` may give, lowest first."""
    return [role for role in reversed(ROLES) if access.can_grant(actor_role, role)]


def may_manage(actor_role: str | None, account: Account) -> bool:
    """Whether someone acting as ``actor_role`` may act on ``account``: only on roles
    they could give (a team user acts on users only)."""
    return access.can_grant(actor_role, account.role)


# --------------------------------------------------------------------------
# Creating and editing local users
# --------------------------------------------------------------------------


def _clean(values: dict, name: str, limit: int) -> str:
    value = values.get(name)
    value = value.strip() if isinstance(value, str) else ""
    return value[:limit + 1]


def _email_in_use(organisation_id: int, email: str, except_id: int | None = None) -> bool:
    query = Account.select(Account.id).where((Account.organisation == organisation_id) & (Account.source == "local")
                                             & (fn.LOWER(Account.email) == email.lower()))
    if except_id is not None:
        query = query.where(Account.id != except_id)
    return query.exists()


def check_user(organisation: Organisation, values: dict, *, actor_role: str | None,
               account: Account | None = None) -> dict[str, list[str]]:
    """Every problem with creating (``account`` None) or editing a local user from
    ``values`` (username, email, display_name, sponsor_email, role), by field name."""
    errors: dict[str, list[str]] = {}

    def add(name: str, message: str) -> None:
        errors.setdefault(name, []).append(message)

    for name in ("username", "email", "display_name", "sponsor_email", "role"):
        value = values.get(name)
        if isinstance(value, str) and _has_control(value):
            add(name, "Remove the control characters (such as tabs or NUL) from this field.")
    if errors:
        return errors

    email = _clean(values, "email", 320)
    sponsor = _clean(values, "sponsor_email", 320)
    display_name = _clean(values, "display_name", 200)
    if not email:
        add("email", "Enter the user's email address.")
    elif len(email) > 320 or not EMAIL.match(email):
        add("email", f"{email[:80]!r} is not an email address, like name@example.com.")
    elif _email_in_use(organisation.id, email, account.id if account else None):
        add("email", f"Another local user of {organisation.name} already has the email {email}.")
    if sponsor and (len(sponsor) > 320 or not EMAIL.match(sponsor)):
        add("sponsor_email", f"{sponsor[:80]!r} is not an email address, like manager@example.com.")
    elif sponsor and email and sponsor.lower() == email.lower():
        add("sponsor_email", "The sponsor approves the user's sign-ins, so it must be someone else's address.")
    if len(display_name) > 200:
        add("display_name", "A display name is at most 200 characters.")
    if account is None:
        username = _clean(values, "username", 256)
        role = _clean(values, "role", 16) or "user"
        if not username:
            add("username", "Enter a username.")
        elif not USERNAME.match(username):
            add("username", "A username is 1 to 256 letters, digits or . _ @ + - (no spaces).")
        elif Account.select().where((Account.organisation == organisation) & (Account.username == username)).exists():
            add("username", f"The username {username} is already taken in {organisation.name}.")
        if role not in ROLES:
            add("role", f"Choose one of: {', '.join(ROLES)}.")
        elif not access.can_grant(actor_role, role):
            add("role", f"Your role does not let you give the role {role}.")
    return errors


def create_user(organisation: Organisation, values: dict, *, actor_role: str | None, actor: str,
                acting_for: str | None = None, ip: str = "", user_agent: str = "") -> Account:
    """Create an active local account (no password: the user signs in with an emailed
    link, or an admin sends a password reset). Raises UserError listing every problem."""
    with db.atomic():
        errors = check_user(organisation, values, actor_role=actor_role)
        if errors:
            raise UserError("; ".join(m for ms in errors.values() for m in ms), errors)
        account = _insert(organisation, values)
        audit.record("account.created", actor=actor, acting_for=acting_for, organisation=organisation.slug,
                     target=account.username, ip=ip, user_agent=user_agent,
                     details={"role": account.role, "source": "local", "via": "users page"})
    return account


def _insert(organisation: Organisation, values: dict) -> Account:
    username = _clean(values, "username", 256)
    return Account.create(
        organisation=organisation, username=username, email=_clean(values, "email", 320),
        display_name=_clean(values, "display_name", 200) or username,
        sponsor_email=_clean(values, "sponsor_email", 320) or None, role=_clean(values, "role", 16) or "user",
        source="local", status="active")


def update_user(account: Account, values: dict, *, actor_role: str | None, actor: str, acting_for: str | None = None,
                ip: str = "", user_agent: str = "") -> Account:
    """Change a local user's email, sponsor email and display name (audited with the
    names of the fields that changed, not their values)."""
    if account.source != "local":
        raise UserError(f"{account.username} comes from a directory: change them there")
    if not may_manage(actor_role, account):
        raise UserError(f"Your role does not let you change the {account.role} {account.username}.")
    organisation = Organisation.get_by_id(account.organisation_id)
    with db.atomic():
        errors = check_user(organisation, values, actor_role=actor_role, account=account)
        if errors:
            raise UserError("; ".join(m for ms in errors.values() for m in ms), errors)
        new = {"email": _clean(values, "email", 320), "sponsor_email": _clean(values, "sponsor_email", 320) or None,
               "display_name": _clean(values, "display_name", 200) or account.username}
        changed = sorted(name for name, value in new.items() if getattr(account, name) != value)
        if changed:
            accounts.notify_contact_change(account, account.email, changed, actor=actor)
            Account.update(updated_at=utcnow(), **new).where(Account.id == account.id).execute()
            for name, value in new.items():
                setattr(account, name, value)
            audit.record("account.updated", actor=actor, acting_for=acting_for, organisation=organisation.slug,
                         target=account.username, ip=ip, user_agent=user_agent, details={"changed": changed})
    return account


# --------------------------------------------------------------------------
# CSV import and export
# --------------------------------------------------------------------------


@dataclass
class ImportRow:
    """One data row of an import file: its line, values and problems."""

    line: int
    values: dict
    errors: list[str] = field(default_factory=list)


@dataclass
class ImportPreview:
    """What an import would do: the rows, or why the file as a whole is refused."""

    rows: list[ImportRow] = field(default_factory=list)
    error: str | None = None  # the whole file is refused (size, header, encoding)
    columns: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every row can be created (nothing is created otherwise)."""
        return self.error is None and bool(self.rows) and not any(row.errors for row in self.rows)

    @property
    def problem_rows(self) -> list[ImportRow]:
        """The rows with errors."""
        return [row for row in self.rows if row.errors]


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.1f} MB"
    return f"{max(1, round(count / 1024))} KB"


def decode_csv(data: bytes) -> str:
    """The text of an uploaded CSV (UTF-8, with or without a byte order mark).
    Raises UserError for anything else."""
    if len(data) > MAX_CSV_BYTES:
        raise UserError(f"The file is {_size(len(data))}; an import file may be at most {_size(MAX_CSV_BYTES)} "
                        f"({MAX_CSV_ROWS:,} users). Split it into smaller files.")
    if b"\x00" in data:
        raise UserError("This is not a CSV text file (it contains binary data). Save the sheet as CSV (UTF-8).")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError("The file is not UTF-8 text. Save it as “CSV UTF-8” and upload it again.") from None


def preview_import(organisation: Organisation, text: str, *, actor_role: str | None) -> ImportPreview:
    """Parse and check an import file for ``organisation`` without writing anything.

    The header must name ``username`` and ``email`` and may add ``display_name``,
    ``sponsor_email`` and ``role`` (default user), in any order; nothing else. Each row
    is checked like the create form, and against the other rows (duplicate usernames
    and emails)."""
    preview = ImportPreview()
    if len(text.encode("utf-8")) > MAX_CSV_BYTES:
        preview.error = f"The file is larger than {_size(MAX_CSV_BYTES)}. Split it into smaller files."
        return preview
    if "\x00" in text:
        preview.error = "This is not a CSV text file (it contains binary data). Save the sheet as CSV (UTF-8)."
        return preview
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            preview.error = "The file is empty. The first line must be the header: username,email,display_name,sponsor_email."
            return preview
        columns = [cell.strip().lower().replace(" ", "_") for cell in header]
        unknown = [c for c in columns if c not in CSV_COLUMNS]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if unknown or missing or repeated:
            reasons = []
            if missing:
                reasons.append(f"it lacks {', '.join(missing)}")
            if unknown:
                reasons.append(f"{', '.join(repr(c) for c in unknown[:5])} {'is not a known column' if len(unknown) == 1 else 'are not known columns'}")
            if repeated:
                reasons.append(f"{', '.join(repeated)} appears more than once")
            preview.error = (f"Wrong header ({'; '.join(reasons)}). The first line must name the columns: "
                             f"username and email, optionally display_name, sponsor_email and role.")
            return preview
        preview.columns = columns
        for record in reader:
            if not any(cell.strip() for cell in record):
                continue  # blank lines are harmless
            if len(preview.rows) >= MAX_CSV_ROWS:
                preview.error = f"The file has more than {MAX_CSV_ROWS:,} users. Split it into smaller files."
                return preview
            row = ImportRow(line=reader.line_num, values={})
            if len(record) != len(columns):
                row.errors.append(f"has {len(record)} values where the header has {len(columns)} columns")
            for name, value in zip(columns, record):
                row.values[name] = value.strip()
            for name in CSV_COLUMNS:
                row.values.setdefault(name, "")
            row.values["role"] = row.values["role"].lower() or "user"
            preview.rows.append(row)
    except csv.Error as exc:
        preview.error = f"The file is not valid CSV (line {reader.line_num}: {exc})."
        return preview
    if not preview.rows:
        preview.error = "The file has a header but no users."
        return preview
    _check_rows(organisation, preview.rows, actor_role)
    return preview


def _check_rows(organisation: Organisation, rows: list[ImportRow], actor_role: str | None) -> None:
    names: dict[str, int] = {}
    emails: dict[str, int] = {}
    usernames = [row.values["username"] for row in rows if row.values["username"]]
    taken = set()
    for start in range(0, len(usernames), 500):
        chunk = usernames[start:start + 500]
        taken |= {a.username for a in Account.select(Account.username).where(
            (Account.organisation == organisation) & Account.username.in_(chunk))}
    lowered = [row.values["email"].lower() for row in rows if row.values["email"]]
    used = set()
    for start in range(0, len(lowered), 500):
        chunk = lowered[start:start + 500]
        used |= {(a.email or "").lower() for a in Account.select(Account.email).where(
            (Account.organisation == organisation) & (Account.source == "local")
            & fn.LOWER(Account.email).in_(chunk))}
    for row in rows:
        values = row.values
        control = [name for name in CSV_COLUMNS if _has_control(values[name])]
        if control:
            row.errors.append(f"control characters in {', '.join(control)}")
            for name in control:
                values[name] = _printable(values[name])
        username, email, sponsor, role = values["username"], values["email"], values["sponsor_email"], values["role"]
        if not username:
            row.errors.append("no username")
        elif not USERNAME.match(username):
            row.errors.append(f"username {username[:60]!r}: use 1 to 256 letters, digits or . _ @ + - (no spaces)")
        elif username in taken:
            row.errors.append(f"username {username} is already taken in {organisation.name}")
        elif username in names:
            row.errors.append(f"username {username} is also on line {names[username]}")
        else:
            names[username] = row.line
        if not email:
            row.errors.append("no email")
        elif len(email) > 320 or not EMAIL.match(email):
            row.errors.append(f"{email[:80]!r} is not an email address")
        elif email.lower() in used:
            row.errors.append(f"email {email} already belongs to a local user of {organisation.name}")
        elif email.lower() in emails:
            row.errors.append(f"email {email} is also on line {emails[email.lower()]}")
        else:
            emails[email.lower()] = row.line
        if sponsor and (len(sponsor) > 320 or not EMAIL.match(sponsor)):
            row.errors.append(f"sponsor {sponsor[:80]!r} is not an email address")
        if len(values["display_name"]) > 200:
            row.errors.append("display name longer than 200 characters")
        if role not in ROLES:
            row.errors.append(f"role {role[:20]!r} is not one of {', '.join(ROLES)}")
        elif not access.can_grant(actor_role, role):
            row.errors.append(f"your role does not let you give the role {role}")


def import_users(organisation: Organisation, text: str, *, actor_role: str | None, actor: str,
                 acting_for: str | None = None, ip: str = "", user_agent: str = "") -> list[Account]:
    """Create every user of an import file in one transaction: all of them, or (on any
    problem, including one found only while writing) none. Raises UserError."""
    with db.atomic() as transaction:
        preview = preview_import(organisation, text, actor_role=actor_role)
        if not preview.ok:
            reason = preview.error or f"{len(preview.problem_rows)} row(s) have problems; nothing was imported"
            raise UserError(reason)
        created = []
        try:
            for row in preview.rows:
                created.append(_insert(organisation, row.values))
        except peewee.IntegrityError:
            transaction.rollback()
            raise UserError("Another admin created some of these users at the same moment; nothing was imported. "
                            "Upload the file again to see what is left.") from None
        audit.record("users.imported", actor=actor, acting_for=acting_for, organisation=organisation.slug,
                     target=f"{len(created)} users", ip=ip, user_agent=user_agent,
                     details={"count": len(created), "usernames": [a.username for a in created[:50]],
                              "more": max(0, len(created) - 50)})
    return created


def _cell(value) -> str:
    """A CSV cell that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def export_csv(organisation: Organisation, filters: Filters, *, actor: str, acting_for: str | None = None,
               ip: str = "", user_agent: str = ""):
    """The accounts matching ``filters`` as CSV text (audited once)."""
    audit.record("users.exported", actor=actor, acting_for=acting_for, organisation=organisation.slug,
                 target="users", ip=ip, user_agent=user_agent, details={"filters": filters.as_args()})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for account in all_matching(organisation, filters):
        writer.writerow([_cell(v) for v in (
            account.username, account.email, account.display_name, account.sponsor_email, account.role,
            account.status, account.source, account.organisation.slug,
            "on" if account.totp_enabled_at else ("must enrol" if account.must_enrol_totp else "off"),
            account.created_at.isoformat(timespec="seconds") if account.created_at else "",
            account.last_sign_in_at.isoformat(timespec="seconds") if account.last_sign_in_at else "")])
    return buffer.getvalue()
