"""Rate limits for sign-in attempts, link requests and approval emails (SECURITY.md 9, 10).

A :class:`Limit` says "at most ``count`` attempts per ``window``" and is applied to a key
(an account's normalised email, a client IP from :func:`ip_key`, an approver id, ...).
The algorithm is a true sliding window log: each counted attempt is a timestamp, and an
attempt is allowed while fewer than ``count`` timestamps are younger than ``window``.

Two backends:

* :class:`MemoryBackend` (default, ``flask run`` / tests): one process only.
* :class:`RedisBackend` (``GATEHOUSE_REDIS_URL``): one sorted set per key, updated by a
  single Lua script, so several app processes behind a load balancer share one count and
  parallel attempts cannot slip past a limit.

Choices worth knowing:

* A refused attempt is **not** counted. Counting it would let a client that keeps
  retrying extend its own block forever (and let an attacker keep a victim's account
  blocked indefinitely with a trickle of requests); the block lifts ``window`` after the
  oldest counted attempt, which is what ``retry_after`` reports.
* :func:`check_all` is all-or-nothing: an attempt is counted against every limit only
  when every limit allows it. Otherwise an attacker throttled per IP would still burn a
  victim's per-account budget and lock the real user out.
* Keys are normalised (``strip().lower()``) so ``Alice@X`` and ``alice@x`` share a count.
  In Redis they are hashed (SHA-256, or HMAC-SHA-256 when a secret is given) so emails
  and IPs never appear in clear: ``gatehouse:rl:<limit.name>:<hex digest>``.
* If Redis goes away at runtime the limiter keeps answering from a per-process memory
  backend and logs a warning (availability over strictness: a Redis outage must not take
  sign-in down). Limits then hold per process instead of globally until Redis is back;
  account lock-out in the database (SECURITY.md 10) does not depend on Redis.

This module must not import Flask: ``create_app`` calls :func:`configure` once.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import ipaddress
import logging
import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("gatehouse.ratelimit")

DEFAULT_PREFIX = "gatehouse:rl"


class RateLimitConfigError(Exception):
    """``GATEHOUSE_REDIS_URL`` is malformed or Redis cannot be reached at start-up."""


@dataclass(frozen=True)
class Limit:
    """At most ``count`` attempts per ``window``, e.g. ``Limit("link-requests-per-account",
    count=5, window=timedelta(minutes=15))``. ``name`` is part of the storage key, so two
    limits with different names never share a count."""

    name: str
    count: int
    window: datetime.timedelta

    def __post_init__(self):
        # Fail at import time of the caller, not on the first throttled request.
        if not self.name or any(ch.isspace() for ch in self.name):
            raise ValueError(f"limit name must be non-empty without spaces: {self.name!r}")
        if self.count < 1:
            raise ValueError(f"limit {self.name}: count must be at least 1")
        if self.window.total_seconds() <= 0:
            raise ValueError(f"limit {self.name}: window must be positive")

    @property
    def seconds(self) -> float:
        """The window in seconds."""
        return self.window.total_seconds()


@dataclass(frozen=True)
class Verdict:
    """Whether an attempt is allowed, how many more would be, and when to retry.

    ``remaining`` is the number of further attempts allowed right now (after this one,
    for :func:`hit`); ``retry_after`` is the whole number of seconds, rounded up, until
    another attempt would be allowed (0 when allowed)."""

    allowed: bool
    remaining: int
    retry_after: int

    def minutes(self) -> int:
        """``retry_after`` rounded up to whole minutes, at least 1 when refused, for
        "try again in N minutes"."""
        if self.allowed:
            return 0
        return max(1, math.ceil(self.retry_after / 60))


def _refused_retry(seconds: float) -> int:
    # Round up so a client that waits exactly retry_after is never refused again, and
    # never report 0 for a refusal (it would read as "allowed").
    return max(1, math.ceil(seconds - 1e-9))


def combine(verdicts: Sequence[Verdict]) -> Verdict:
    """The most restrictive of several verdicts: allowed only if all are, the fewest
    remaining, and the longest wait (the attempt succeeds only once every limit frees)."""
    if not verdicts:
        raise ValueError("no verdicts to combine")
    allowed = all(v.allowed for v in verdicts)
    return Verdict(
        allowed=allowed,
        remaining=min(v.remaining for v in verdicts),
        retry_after=0 if allowed else max(v.retry_after for v in verdicts),
    )


def normalise_key(key: str) -> str:
    """The form a key is counted under: surrounding space removed, lower case."""
    return key.strip().lower()


def ip_key(address: str) -> str:
    """A per-IP key: IPv4 as is, IPv6 reduced to its /64, because one client normally
    owns a whole /64 and could otherwise rotate addresses to escape a per-IP limit."""
    try:
        ip = ipaddress.ip_address(address.strip())
    except ValueError:
        return normalise_key(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/64", strict=False))
    return str(ip)


class Backend(Protocol):
    """Storage for attempt counts. ``now`` is a Unix time in seconds; ``None`` means
    "the backend's clock"."""

    def hit(self, key: str, limit: Limit, now: float | None = None) -> Verdict:
        """Count one attempt if the limit allows it and return the verdict."""

    def peek(self, key: str, limit: Limit, now: float | None = None) -> Verdict:
        """The verdict an attempt would get now, without counting anything."""

    def reset(self, key: str, limit: Limit) -> None:
        """Forget every attempt counted for ``key`` under ``limit``."""

    def hit_all(self, checks: Sequence[tuple[Limit, str]], now: float | None = None) -> list[Verdict]:
        """Atomically: count the attempt under every (limit, key) if all allow it,
        otherwise count nothing. One verdict per check, in order."""


# --------------------------------------------------------------------------- memory


class MemoryBackend:
    """Sliding window log in a dict, for one process. Thread-safe (one lock: each
    operation is a few list operations, contention is not a concern).

    Memory is bounded: every ``sweep_every`` seconds keys whose attempts have all expired
    are dropped, and beyond ``max_keys`` the least recently used keys are evicted (an
    evicted key loses its count, which an attacker could provoke only by creating more
    than ``max_keys`` fresh keys inside one window — the per-IP limit stops that first)."""

    def __init__(self, max_keys: int = 100_000, sweep_every: float = 60.0):
        self.max_keys = max_keys
        self.sweep_every = sweep_every
        self._lock = threading.Lock()
        # (limit name, key) -> (window seconds, timestamps oldest first); LRU order.
        self._entries: OrderedDict[tuple[str, str], tuple[float, deque[float]]] = OrderedDict()
        self._last_sweep = 0.0

    def __len__(self) -> int:
        """Number of keys currently held."""
        return len(self._entries)

    def hit(self, key: str, limit: Limit, now: float | None = None) -> Verdict:
        """See :meth:`Backend.hit`."""
        return self.hit_all([(limit, key)], now)[0]

    def peek(self, key: str, limit: Limit, now: float | None = None) -> Verdict:
        """See :meth:`Backend.peek`."""
        return self._apply([(limit, key)], now, count=False)[0]

    def reset(self, key: str, limit: Limit) -> None:
        """See :meth:`Backend.reset`."""
        with self._lock:
            self._entries.pop((limit.name, normalise_key(key)), None)

    def hit_all(self, checks: Sequence[tuple[Limit, str]], now: float | None = None) -> list[Verdict]:
        """See :meth:`Backend.hit_all`."""
        return self._apply(checks, now, count=True)

    def _apply(self, checks, now, count: bool) -> list[Verdict]:
        now = time.time() if now is None else float(now)
        with self._lock:
            self._maybe_sweep(now)
            logs = []
            for limit, key in checks:
                ident = (limit.name, normalise_key(key))
                entry = self._entries.get(ident)
                stamps = entry[1] if entry else deque()
                cutoff = now - limit.seconds
                while stamps and stamps[0] <= cutoff:
                    stamps.popleft()
                logs.append((limit, ident, stamps))
            all_ok = all(len(stamps) < limit.count for limit, _, stamps in logs)
            verdicts = []
            for limit, ident, stamps in logs:
                used = len(stamps)
                if all_ok and count:
                    stamps.append(now)
                    self._entries[ident] = (limit.seconds, stamps)
                    self._entries.move_to_end(ident)
                    verdicts.append(Verdict(True, limit.count - used - 1, 0))
                elif used < limit.count:
                    verdicts.append(Verdict(True, limit.count - used, 0))
                else:
                    # Allowed again once enough of the oldest attempts age out.
                    frees_at = stamps[used - limit.count] + limit.seconds
                    verdicts.append(Verdict(False, 0, _refused_retry(frees_at - now)))
            if count:
                self._evict_over_cap()
            return verdicts

    def _maybe_sweep(self, now: float) -> None:
        if now - self._last_sweep < self.sweep_every and len(self._entries) <= self.max_keys:
            return
        self._last_sweep = now
        expired = [k for k, (window, stamps) in self._entries.items() if not stamps or stamps[-1] <= now - window]
        for ident in expired:
            del self._entries[ident]

    def _evict_over_cap(self) -> None:
        evicted = 0
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
            evicted += 1
        if evicted:
            log.warning("rate limit memory full (%d keys): evicted %d least recently used", self.max_keys, evicted)


# --------------------------------------------------------------------------- redis

# One script for hit, peek and hit_all so every decision is atomic inside Redis.
# KEYS: one sorted set per (limit, key); scores are attempt times in milliseconds.
# ARGV: now_ms ("" = Redis server clock, one clock for all app processes), mode
# ("hit" | "peek"), a unique member for this attempt, then window_ms and count per key.
# Returns allowed (0/1), remaining, retry_ms for each key.
_SCRIPT = """
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local mode = ARGV[2]
local member = ARGV[3]
local used = {}
local all_ok = true
for i = 1, #KEYS do
  local window = tonumber(ARGV[2 + 2 * i])
  local limit = tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  used[i] = redis.call('ZCARD', KEYS[i])
  if used[i] >= limit then all_ok = false end
end
local out = {}
for i = 1, #KEYS do
  local window = tonumber(ARGV[2 + 2 * i])
  local limit = tonumber(ARGV[3 + 2 * i])
  local n = used[i]
  if all_ok and mode == 'hit' then
    redis.call('ZADD', KEYS[i], now, member)
    -- the newest attempt is now, so the whole set is useless after one window
    redis.call('PEXPIRE', KEYS[i], math.ceil(window) + 1000)
    table.insert(out, 1); table.insert(out, limit - n - 1); table.insert(out, 0)
  elseif n < limit then
    table.insert(out, 1); table.insert(out, limit - n); table.insert(out, 0)
  else
    local oldest = redis.call('ZRANGE', KEYS[i], n - limit, n - limit, 'WITHSCORES')
    local retry = tonumber(oldest[2]) + window - now
    table.insert(out, 0); table.insert(out, 0); table.insert(out, math.ceil(retry))
  end
end
return out
"""

def _redis_module():
    # Imported lazily so the memory backend works where the redis package is absent.
    import redis

    return redis


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe for logs and error messages."""
    try:
        parts = urlsplit(url)
        if parts.password:
            user = parts.username or ""
            host = parts.hostname or ""
            if parts.port:
                host = f"{host}:{parts.port}"
            return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:
        return "<unparseable URL>"
    return url


class RedisBackend:
    """Sliding window log in Redis, shared by every process using the same server.

    Every operation is one Lua script call (``register_script``: EVALSHA, and on
    NOSCRIPT it loads the script again), so it is atomic across processes and threads.

    When Redis cannot be reached the call is answered by ``fallback`` (a
    :class:`MemoryBackend`) with a logged warning, and Redis is retried after
    ``retry_interval`` seconds rather than on every request, so an outage does not add
    a connect timeout to each sign-in."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        secret: bytes | None = None,
        fallback: Backend | None = None,
        retry_interval: float = 5.0,
        timeout: float = 1.0,
        client=None,
    ):
        redis = _redis_module()
        self.url = url
        self.prefix = prefix
        self._secret = secret
        self.client = client or redis.Redis.from_url(
            url, socket_connect_timeout=timeout, socket_timeout=timeout, health_check_interval=30
        )
        self._script = self.client.register_script(_SCRIPT)
        self.fallback = fallback if fallback is not None else MemoryBackend()
        self.retry_interval = retry_interval
        self._down_errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
        self._state_lock = threading.Lock()
        self._down_until: float | None = None  # monotonic time; None while Redis is healthy

    def storage_key(self, key: str, limit: Limit) -> str:
        """``<prefix>:<limit.name>:<digest of the normalised key>`` — no email or IP in clear."""
        data = normalise_key(key).encode()
        if self._secret:
            digest = hmac.new(self._secret, data, hashlib.sha256).hexdigest()
        else:
            digest = hashlib.sha256(data).hexdigest()
        return f"{self.prefix}:{limit.name}:{digest}"

    def ping(self) -> None:
        """Raise the client's error if Redis does not answer."""
        self.client.ping()

    def hit(self, key: str, limit: Limit, now: float | None = None) -> Verdict:
        """See :meth:`Backend.hit`."""
        return self.hit_all([(limit, key)], now)[0]

    def peek(self, key: str, limit: Limit, now: float | None = None) -> Verdict:
        """See :meth:`Backend.peek`."""
        return self._run([(limit, key)], now, "peek")

    def hit_all(self, checks: Sequence[tuple[Limit, str]], now: float | None = None) -> list[Verdict]:
        """See :meth:`Backend.hit_all`."""
        return self._run(checks, now, "hit")

    def reset(self, key: str, limit: Limit) -> None:
        """See :meth:`Backend.reset`."""
        # Clear both: the memory copy may hold counts from an outage.
        self.fallback.reset(key, limit)
        if self._use_redis():
            try:
                self.client.delete(self.storage_key(key, limit))
            except self._down_errors as exc:
                self._mark_down(exc)

    def _run(self, checks, now, mode: str):
        if self._use_redis():
            keys = [self.storage_key(key, limit) for limit, key in checks]
            args: list = ["" if now is None else repr(float(now) * 1000), mode, uuid.uuid4().hex]
            for limit, _ in checks:
                args += [repr(limit.seconds * 1000), limit.count]
            try:
                flat = self._script(keys=keys, args=args)
            except self._down_errors as exc:
                self._mark_down(exc)
            else:
                self._mark_up()
                verdicts = []
                for i in range(0, len(flat), 3):
                    allowed, remaining, retry_ms = (int(x) for x in flat[i : i + 3])
                    retry = 0 if allowed else _refused_retry(retry_ms / 1000)
                    verdicts.append(Verdict(bool(allowed), remaining, retry))
                return verdicts[0] if mode == "peek" else verdicts
        if mode == "peek":
            limit, key = checks[0]
            return self.fallback.peek(key, limit, now)
        return self.fallback.hit_all(checks, now)

    def _use_redis(self) -> bool:
        with self._state_lock:
            return self._down_until is None or time.monotonic() >= self._down_until

    def _mark_down(self, exc: BaseException) -> None:
        with self._state_lock:
            first = self._down_until is None
            self._down_until = time.monotonic() + self.retry_interval
        # Warn once per outage, not once per request; retries that fail again go to debug.
        (log.warning if first else log.debug)(
            "Redis at %s unreachable (%s): rate limits fall back to this process's memory",
            redact_url(self.url),
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )

    def _mark_up(self) -> None:
        if self._down_until is None:  # fast path, no lock on the healthy path
            return
        with self._state_lock:
            was_down, self._down_until = self._down_until is not None, None
        if was_down:
            log.warning("Redis at %s reachable again: rate limits shared again", redact_url(self.url))


# --------------------------------------------------------------------------- module API

_backend: Backend = MemoryBackend()


def configure(redis_url: str | None, *, secret: bytes | None = None) -> None:
    """Choose the backend; called once by ``create_app``.

    With a URL: a :class:`RedisBackend`, after a ``PING`` — a malformed or unreachable
    URL raises :class:`RateLimitConfigError` with a one-line message naming
    ``GATEHOUSE_REDIS_URL`` (start-up is the moment to find out, not the first sign-in).
    Without: a fresh :class:`MemoryBackend`. ``secret`` (e.g. the app's secret key)
    turns key hashing into HMAC so digests cannot be checked against a list of emails."""
    global _backend
    if not redis_url:
        _backend = MemoryBackend()
        return
    shown = redact_url(redis_url)
    redis = _redis_module()
    try:
        candidate = RedisBackend(redis_url, secret=secret)
        candidate.ping()
    except (ValueError, redis.exceptions.RedisError) as exc:  # ValueError: bad scheme or port
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if redis_url in reason:
            reason = reason.replace(redis_url, shown)
        raise RateLimitConfigError(f"GATEHOUSE_REDIS_URL={shown}: cannot use Redis for rate limits: {reason}") from None
    _backend = candidate


def get_backend() -> Backend:
    """The backend chosen by :func:`configure` (for the health page and tests)."""
    return _backend


def set_backend(backend: Backend) -> Backend:
    """Install ``backend`` and return the previous one (tests)."""
    global _backend
    previous, _backend = _backend, backend
    return previous


def hit(limit: Limit, key: str, now: float | None = None) -> Verdict:
    """Count an attempt under ``limit`` for ``key`` and say whether it is allowed.
    A refused attempt is not counted (see the module docstring)."""
    return _backend.hit(key, limit, now)


def peek(limit: Limit, key: str, now: float | None = None) -> Verdict:
    """The verdict an attempt would get now, counting nothing."""
    return _backend.peek(key, limit, now)


def reset(limit: Limit, key: str) -> None:
    """Forget ``key``'s attempts under ``limit``, e.g. after a successful sign-in."""
    _backend.reset(key, limit)


def check_all(checks: list[tuple[Limit, str]], now: float | None = None) -> Verdict:
    """Apply several limits to one attempt (per account AND per IP AND per approver).

    All-or-nothing and atomic: the attempt is counted under every limit when all allow
    it, under none otherwise; the most restrictive verdict is returned."""
    if not checks:
        raise ValueError("check_all needs at least one (limit, key)")
    return combine(_backend.hit_all(checks, now))
