"""Email sign-in: from an identifier to a sign-in request, its email, and its outcome.

The one path for "Email me a sign-in link" and for manager approval:

1. Rate limits per identifier and per IP (the same for known and unknown identifiers).
2. ``policy.decide`` finds the user and picks the approval profile.
3. User approval: a request and an email with ``/l/<token>`` to the user.
   Manager approval: the profile's first factor first (password, the user's own email
   link, or nothing), then a request and an email with ``/a/<token>`` to the approver.
4. An unknown identifier, an inactive account or a user without mail gets a decoy
   request that looks exactly the same to the browser and sends nothing.
5. Failures (wrong password, "This wasn't me", an expired link) can notify the user's
   manager (``notify_failure``), and a request's expiry is audited once (``expire``).

Emails are text with an HTML alternative, rendered from ``templates/email/*.txt`` and
``*.html`` side by side (``render_email``). They go through the outbox, so a page never
waits for SMTP and known and unknown identifiers take the same time. Nothing here
touches Flask.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from models import Account, Organisation, SignInRequest, db, utcnow

from . import audit, mailer, policy, profiles, ratelimit, signin_requests
from .directory import DirectoryUser

LINKS_PER_IDENTIFIER = ratelimit.Limit("sign-in-links-per-identifier", 5, dt.timedelta(minutes=15))
LINKS_PER_IP = ratelimit.Limit("sign-in-links-per-ip", 30, dt.timedelta(minutes=15))
APPROVALS_PER_APPROVER = ratelimit.Limit("approval-emails-per-approver", 10, dt.timedelta(hours=1))
FAILURE_NOTICES = ratelimit.Limit("failed-sign-in-notices", 1, dt.timedelta(minutes=30))
DECOY_LIFETIME = profiles.DEFAULT_LIFETIME
EMAIL_TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"


class Throttled(Exception):
    """Too many attempts: the reply says when to try again and nothing about the account."""

    def __init__(self, minutes: int):
        super().__init__(f"Too many sign-in attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}.")
        self.minutes = minutes


class Unavailable(Exception):
    """The directory or configuration cannot answer right now; a person-readable reason."""


class NoApprover(Exception):
    """A manager-approval sign-in has nobody to approve it."""


@dataclass
class Started:
    """What the browser needs after asking for a link: where to wait, and the binding
    secret for its cookie (None when the request continues an existing binding)."""

    request: SignInRequest
    binding_secret: str | None
    needs_password: bool = False

    @property
    def waiting_for_manager(self) -> bool:
        return self.request.kind == "manager"


def mask_email(address: str | None) -> str:
    """``j***@e***.com``: enough for a person to recognise, not to harvest."""
    if not address or "@" not in address:
        return "an approver"
    local, _, domain = address.rpartition("@")
    name, dot, tld = domain.rpartition(".")
    masked_domain = f"{name[:1]}***{dot}{tld}" if name else f"{domain[:1]}***"
    return f"{local[:1]}***@{masked_domain}"


def describe_browser(user_agent: str) -> str:
    """A short, human name for a user agent ("Firefox on Linux")."""
    agent = user_agent or ""
    browser = next((name for key, name in (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"),
                                           ("Chrome/", "Chrome"), ("Safari/", "Safari")) if key in agent), "a browser")
    system = next((name for key, name in (("Windows", "Windows"), ("Android", "Android"), ("iPhone", "iOS"),
                                          ("iPad", "iPadOS"), ("Mac OS X", "macOS"), ("Linux", "Linux")) if key in agent), "")
    return f"{browser} on {system}" if system else browser


def organisation_for(account_id: str | None) -> Organisation | None:
    """The organisation named by the Account ID, or the only one when there is one."""
    if account_id:
        return Organisation.get_or_none(Organisation.slug == account_id.strip().lower())
    organisations = list(Organisation.select().limit(2))
    return organisations[0] if len(organisations) == 1 else None


def needs_account_id() -> bool:
    """True when the sign-in page must ask for the Account ID (several organisations)."""
    return Organisation.select().count() > 1


def account_for(organisation: Organisation, user: DirectoryUser, directory) -> Account:
    """The Account row of a directory or local user (created on first sign-in for
    directory users, keyed by the entry's stable id when it has one)."""
    if user.source == "local":
        return Account.get((Account.organisation == organisation) & (Account.username == user.username) & (Account.source == "local"))
    key = user.unique_id or user.dn
    with db.atomic():
        account = Account.get_or_none(
            (Account.organisation == organisation) & (Account.directory == directory) & (Account.external_id == key)
        )
        if account is None:
            account = Account.create(
                organisation=organisation, username=f"{user.username}", email=user.mail, display_name=user.display_name,
                source="directory", directory=directory, external_id=key, role="user", status="active",
            )
        elif account.email != user.mail or account.display_name != user.display_name:
            Account.update(email=user.mail, display_name=user.display_name, updated_at=utcnow()).where(
                Account.id == account.id).execute()
    return account


def _decoy(organisation: Organisation, kind: str, ip: str, user_agent: str) -> Started:
    created = signin_requests.create(organisation, None, None, kind, lifetime_minutes=DECOY_LIFETIME,
                                     ip=ip, user_agent=user_agent)
    return Started(created.request, created.binding_secret)


def _link(profile, path: str, token: str) -> str:
    # Links come from the profile's configured server URL, never from the request's Host header.
    return f"{profile.server_url.rstrip('/')}{path}{token}"


def _one_line(value) -> str:
    # Names and browsers come from the directory or the requester: in the text part a
    # newline in them must not forge extra lines of the details block.
    return " ".join(str(value).split())


def _message_html(message: str, link: str) -> Markup:
    """The admin's message for the HTML part: escaped (it carries the requester's IP,
    browser and name), its line breaks kept, and our own link made clickable."""
    escaped = escape(message)
    if link:
        escaped = escaped.replace(escape(link), Markup('<a href="{0}" style="color:#0969da;">{0}</a>').format(link))
    return Markup("<br>\n").join(escaped.splitlines())


def _email_environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(EMAIL_TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,  # a misspelt variable fails the test, not the recipient
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        auto_reload=False,  # parsed once per process; emails are rendered on the sign-in path
    )
    environment.filters["one_line"] = _one_line
    environment.filters["message_html"] = _message_html
    return environment


# One environment for the process: services have no Flask app (and so no render_template).
_emails = _email_environment()


@dataclass(frozen=True)
class Email:
    """A composed email: one-line subject, plain text and its HTML alternative."""

    subject: str
    text: str
    html: str


def render_email(name: str, **context) -> tuple[str, str]:
    """(text, html) of ``templates/email/<name>.txt`` and ``<name>.html`` with ``context``;
    the HTML one is autoescaped."""
    return _emails.get_template(f"{name}.txt").render(context), _emails.get_template(f"{name}.html").render(context)


def sign_in_email(
    profile, *, kind: str, user: str, link: str, ip: str, browser: str, requested_at: dt.datetime,
    expires_at: dt.datetime, approver: str = "", department: str | None = None,
) -> Email:
    """The sign-in email ``profile`` sends: the profile's subject and message (what the
    admins configured) as the text part plus a details footer, and the same message with
    a button, the plain link and a details table as the HTML part.

    ``kind`` is "user" (the user's own link) or "manager" (an approval request to
    ``approver``); ``department`` is shown to managers when known."""
    # One line each in the message too: a newline in a directory name must not forge lines.
    user, ip, browser = _one_line(user), _one_line(ip), _one_line(browser)
    subject, message = profiles.compose(profile, user=user, link=link, ip=ip, browser=browser,
                                        expires_at=expires_at, approver=approver)
    text, html = render_email(
        "sign_in", kind=kind, subject=subject, message=message, link=link, user=user, department=department,
        requested_at=profiles.format_expiry(requested_at), ip=ip, browser=browser,
        expires=profiles.format_expiry(expires_at), minutes=profile.link_lifetime_minutes,
        organisation=profile.organisation.name,
    )
    return Email(subject, text, html)


def failure_email(
    *, organisation: str, user: str, username: str, reason: str, ip: str, browser: str, failed_at: dt.datetime,
    department: str | None = None, expires_at: dt.datetime | None = None,
) -> Email:
    """The notice to a user's manager that a sign-in failed (``reason`` is a phrase such
    as "the user said the sign-in was not them")."""
    subject = _one_line(f"Failed sign-in for {username}")
    text, html = render_email(
        "failed_sign_in", subject=subject, organisation=organisation, user=user, department=department,
        reason=reason, ip=ip, browser=browser, failed_at=profiles.format_expiry(failed_at),
        expires=profiles.format_expiry(expires_at) if expires_at else None,
        window_minutes=int(FAILURE_NOTICES.window.total_seconds() // 60),
    )
    return Email(subject, text, html)


def _send(profile, to: str, *, kind: str, user_label: str, token: str, request: SignInRequest, approver: str = "",
          department: str | None = None) -> None:
    path = "/a/" if kind == "manager" else "/l/"
    email = sign_in_email(
        profile, kind=kind, user=user_label, link=_link(profile, path, token), ip=request.ip or "an unknown address",
        browser=describe_browser(request.user_agent), requested_at=request.created_at, expires_at=request.expires_at,
        approver=approver, department=department,
    )
    message = mailer.queue(to, email.subject, email.text, email.html, organisation=profile.organisation,
                           mail_servers=profiles.mail_servers_of(profile) or None)
    audit.record("email.queued", actor="gatehouse", organisation=profile.organisation.slug, target=to,
                 details={"outbox_id": message.id, "sign_in_request": request.public_id, "kind": kind})


def user_label(account: Account) -> str:
    """How the person signing in is named in emails and on confirmation pages."""
    if account.display_name and account.display_name != account.username:
        return f"{account.display_name} ({account.username})"
    return account.username


def _throttle(checks) -> None:
    verdict = ratelimit.check_all(checks)
    if not verdict.allowed:
        raise Throttled(verdict.minutes())


def start(
    organisation: Organisation, identifier: str, *, ip: str, user_agent: str, password_checked: bool = False,
) -> Started:
    """Begin an email sign-in for ``identifier``.

    Raises Throttled, Unavailable (directory down), or NoApprover (manager approval with
    nobody to ask). ``Started.needs_password`` asks the caller to check the password
    first (manager approval with the password first factor), for known and unknown
    identifiers alike."""
    identifier = (identifier or "").strip()
    _throttle([(LINKS_PER_IDENTIFIER, f"{organisation.slug}:{identifier}"), (LINKS_PER_IP, ratelimit.ip_key(ip))])
    resolution = policy.decide(organisation, identifier)
    if resolution.error and resolution.user is None and resolution.searched:
        audit.record("sign_in.requested", actor=identifier[:320], organisation=organisation.slug, target=identifier[:320],
                     ip=ip, user_agent=user_agent, outcome="error", details={"reason": resolution.error})
        raise Unavailable("Gatehouse cannot reach your organisation's directory right now. Try again in a few minutes.")
    profile = resolution.profile or profiles.default_profile(organisation)
    if profile is None:
        raise Unavailable("Email sign-in is not set up for this organisation yet. Ask your administrator.")
    first_factor = profile.first_factor if profile.kind == "manager" else None
    if first_factor == "password" and not password_checked:
        return Started(request=None, binding_secret=None, needs_password=True)

    account = account_for(organisation, resolution.user, resolution.directory) if resolution.user else None
    visible_kind = "manager" if profile.kind == "manager" and first_factor != "email_link" else "user"
    if account is None or account.status != "active" or (visible_kind == "user" and not account.email):
        reason = "unknown identifier" if account is None else ("account not active" if account.status != "active" else "no mail address")
        audit.record("sign_in.requested", actor=identifier[:320], organisation=organisation.slug, target=identifier[:320],
                     ip=ip, user_agent=user_agent, outcome="failure", details={"reason": reason, "sent": False})
        return _decoy(organisation, visible_kind, ip, user_agent)

    if visible_kind == "user":
        created = signin_requests.create(
            organisation, account, profile, "user", lifetime_minutes=profile.link_lifetime_minutes, ip=ip,
            user_agent=user_agent, escalate=profile.kind == "manager",
        )
        _send(profile, account.email, kind="user", user_label=user_label(account), token=created.link_token, request=created.request)
        audit.record("sign_in.requested", actor=account.username, organisation=organisation.slug, target=account.username,
                     ip=ip, user_agent=user_agent, details={"request": created.request.public_id, "profile": profile.name,
                                                            "kind": "user", "escalate": created.request.escalate})
        return Started(created.request, created.binding_secret)

    return _ask_manager(profile, account, resolution, ip=ip, user_agent=user_agent)


def _ask_manager(profile, account: Account, resolution, *, ip: str, user_agent: str, binding_hash: str | None = None) -> Started:
    approver = resolution.approver
    if approver is None or not approver.mail:
        audit.record("sign_in.no_approver", actor=account.username, organisation=profile.organisation.slug,
                     target=account.username, ip=ip, user_agent=user_agent, outcome="failure",
                     details={"profile": profile.name, "reason": approver.message if approver else "no approver"})
        raise NoApprover(
            "Your sign-in needs your manager's approval, but no approver is known for your account. "
            "Ask your administrator to set your manager in the directory."
        )
    _throttle([(APPROVALS_PER_APPROVER, approver.mail)])
    created = signin_requests.create(
        profile.organisation, account, profile, "manager", lifetime_minutes=profile.link_lifetime_minutes,
        approver_email=approver.mail, ip=ip, user_agent=user_agent, binding_hash=binding_hash,
    )
    # The department comes from the entry just read, not from a second directory lookup.
    _send(profile, approver.mail, kind="manager", user_label=user_label(account), token=created.link_token,
          request=created.request, approver=approver.mail,
          department=resolution.user.department if resolution.user is not None else None)
    audit.record("sign_in.requested", actor=account.username, organisation=profile.organisation.slug, target=account.username,
                 ip=ip, user_agent=user_agent, details={"request": created.request.public_id, "profile": profile.name,
                                                        "kind": "manager", "approver": approver.mail})
    return Started(created.request, created.binding_secret)


def escalate(request: SignInRequest) -> SignInRequest | None:
    """After the user confirmed their own link (first factor), ask the manager: a manager
    request with the same browser binding follows the confirmed one."""
    if not request.escalate or request.status != "approved" or request.account is None:
        return None
    resolution = policy.decide(request.organisation, request.account.username if request.account.source == "local" else (request.account.email or request.account.username))
    profile = request.profile
    started = _ask_manager(profile, request.account, resolution, ip=request.ip, user_agent=request.user_agent,
                           binding_hash=request.binding_hash)
    SignInRequest.update(status="completed", completed_at=utcnow(), followed_by=started.request.id).where(
        (SignInRequest.id == request.id) & (SignInRequest.status == "approved")).execute()
    return started.request


def notify_failure(
    request: SignInRequest | None, account: Account | None, reason: str, *, profile=None, ip: str | None = None,
    user_agent: str | None = None, resolution=None,
) -> bool:
    """Email the user's manager that a sign-in failed, when the profile asks for it;
    at most once per ``FAILURE_NOTICES`` window per account. Returns whether one was queued.

    ``profile``, ``ip`` and ``user_agent`` default to the request's; pass them when the
    failure has no request (a wrong password before any request exists). A caller that
    has just resolved the user passes its ``policy.decide`` resolution to save a lookup."""
    profile = profile or (request.profile if request is not None else None)
    if account is None or profile is None or not profile.notify_manager_on_failure:
        return False
    if resolution is None:
        resolution = policy.decide(account.organisation, account.username if account.source == "local" else (account.email or account.username))
    if resolution.user is None:
        return False
    approver = policy.approver_for(profile, resolution.user, resolution.directory)
    if not approver.mail or not ratelimit.hit(FAILURE_NOTICES, f"{account.organisation.slug}:{account.id}").allowed:
        return False
    ip = ip if ip is not None else (request.ip if request is not None else "")
    user_agent = user_agent if user_agent is not None else (request.user_agent if request is not None else "")
    email = failure_email(
        organisation=profile.organisation.name, user=user_label(account), username=account.username, reason=reason,
        ip=ip or "an unknown address", browser=describe_browser(user_agent), failed_at=utcnow(),
        department=resolution.user.department, expires_at=request.expires_at if request is not None else None,
    )
    message = mailer.queue(approver.mail, email.subject, email.text, email.html, organisation=profile.organisation,
                           mail_servers=profiles.mail_servers_of(profile) or None)
    audit.record("sign_in.failure_notified", actor="gatehouse", organisation=profile.organisation.slug,
                 target=account.username, details={"approver": approver.mail, "reason": reason, "outbox_id": message.id,
                                                   "request": request.public_id if request is not None else None})
    return True


def password_failed(resolution, *, ip: str, user_agent: str) -> bool:
    """A wrong password (the first factor of manager approval, or a password sign-in) for
    a user the directory knows: the failure notice, when their profile asks for it.

    Only an existing Account is notified about; nothing is created for a failed attempt."""
    if resolution is None or resolution.user is None or resolution.profile is None:
        return False
    user, organisation = resolution.user, resolution.profile.organisation
    if user.source == "local":
        account = Account.get_or_none((Account.organisation == organisation) & (Account.username == user.username)
                                      & (Account.source == "local"))
    else:
        account = Account.get_or_none((Account.organisation == organisation) & (Account.directory == resolution.directory)
                                      & (Account.external_id == (user.unique_id or user.dn)))
    if account is None or account.status != "active":
        return False
    return notify_failure(None, account, "the password was wrong", profile=resolution.profile, ip=ip,
                          user_agent=user_agent, resolution=resolution)


def expire(request: SignInRequest | None, *, ip: str = "", user_agent: str = "") -> SignInRequest | None:
    """Mark ``request`` expired when its lifetime is over, and audit ``sign_in.expired``
    exactly once: only the caller whose UPDATE moves it from pending records the event.

    Call it wherever an expired request can first be noticed (the link and approval
    pages, their POSTs before deciding, the waiting page); ``ip``/``user_agent`` are of
    whoever noticed. Returns the request as it is now."""
    if request is None:
        return None
    request, moved = signin_requests.expire_due(request)
    if not moved:
        return request  # someone else moved it (and audited it), or it was decided just before
    if request.account is not None:  # a decoy's expiry is no event: nobody was signing in
        audit.record("sign_in.expired", actor="gatehouse", organisation=request.organisation.slug,
                     target=request.account.username, ip=ip, user_agent=user_agent, outcome="failure",
                     details={"request": request.public_id, "kind": request.kind,
                              "expired_at": profiles.format_expiry(request.expires_at)})
    return request


def department_of(account: Account) -> str | None:
    """The account's department, read live from its directory (None for local accounts
    or when the directory cannot say)."""
    if account.source != "directory" or account.directory is None:
        return None
    from .directory import DirectoryError, find_user

    try:
        user = find_user(account.directory, account.email or account.username)
    except DirectoryError:
        return None
    return user.department if user else None
