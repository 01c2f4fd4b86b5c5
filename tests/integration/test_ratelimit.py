"""Rate limiter (services/ratelimit.py) on the memory backend and on a real Redis.

Redis: ``GATEHOUSE_TEST_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); Redis cases
are skipped with the reason when it is not reachable. Each test uses its own key prefix
and deletes its keys afterwards, so it can share the server with other engineers' runs.
Time is passed explicitly (``now``) instead of sleeping.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta

import pytest

from services import ratelimit
from services.ratelimit import (
    Limit,
    MemoryBackend,
    RateLimitConfigError,
    RedisBackend,
    Verdict,
)

REDIS_URL = os.environ.get("GATEHOUSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = 1_800_000_000.0  # a fixed "now"; every test moves forward from it
FIVE = Limit("test-five-per-15min", count=5, window=timedelta(minutes=15))


def _redis_skip_reason() -> str | None:
    try:
        import redis
    except ImportError:
        return "the redis package is not installed"
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means skip, with the reason
        return f"Redis not reachable at {REDIS_URL} ({type(exc).__name__}); set GATEHOUSE_TEST_REDIS_URL"
    return None


REDIS_SKIP = _redis_skip_reason()
needs_redis = pytest.mark.skipif(REDIS_SKIP is not None, reason=REDIS_SKIP or "")


def _cleanup(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=500))
    if keys:
        client.delete(*keys)


@pytest.fixture
def redis_prefix():
    """A unique key prefix for one test; its keys are deleted afterwards."""
    prefix = f"gatehouse-test:{uuid.uuid4().hex}:rl"
    yield prefix
    _cleanup(prefix)


@pytest.fixture
def make_redis(redis_prefix):
    """Build RedisBackends sharing this test's prefix (each one = one app process)."""
    created = []

    def make(**kwargs):
        backend = RedisBackend(REDIS_URL, prefix=redis_prefix, **kwargs)
        created.append(backend)
        return backend

    yield make
    for backend in created:
        backend.client.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=needs_redis)])
def backend(request):
    """Each behaviour test runs once per backend."""
    if request.param == "memory":
        return MemoryBackend()
    return request.getfixturevalue("make_redis")()


@pytest.fixture
def installed(backend):
    """The module-level API (hit/peek/reset/check_all) bound to ``backend``."""
    previous = ratelimit.set_backend(backend)
    yield backend
    ratelimit.set_backend(previous)


# --------------------------------------------------------------------------- verdicts


def test_verdict_minutes_rounds_up():
    assert Verdict(True, 3, 0).minutes() == 0
    assert Verdict(False, 0, 1).minutes() == 1
    assert Verdict(False, 0, 60).minutes() == 1
    assert Verdict(False, 0, 61).minutes() == 2
    assert Verdict(False, 0, 900).minutes() == 15


def test_limit_rejects_nonsense():
    with pytest.raises(ValueError):
        Limit("x", count=0, window=timedelta(minutes=1))
    with pytest.raises(ValueError):
        Limit("x", count=1, window=timedelta(0))
    with pytest.raises(ValueError):
        Limit("has space", count=1, window=timedelta(minutes=1))


def test_ip_key_groups_ipv6_by_64():
    assert ratelimit.ip_key("192.0.2.7") == "192.0.2.7"
    assert ratelimit.ip_key("2001:db8:1:2::1") == ratelimit.ip_key("2001:db8:1:2:ffff::9")
    assert ratelimit.ip_key("2001:db8:1:2::1") != ratelimit.ip_key("2001:db8:1:3::1")
    assert ratelimit.ip_key("::ffff:192.0.2.7") == "192.0.2.7"


# --------------------------------------------------------------------------- both backends


def test_under_limit_allowed_with_remaining_counting_down(installed):
    remaining = [ratelimit.hit(FIVE, "alice@example.org", now=T0 + i) for i in range(5)]
    assert [v.allowed for v in remaining] == [True] * 5
    assert [v.remaining for v in remaining] == [4, 3, 2, 1, 0]
    assert all(v.retry_after == 0 and v.minutes() == 0 for v in remaining)


def test_over_limit_refused_with_retry_after_the_window_remainder(installed):
    for i in range(5):
        ratelimit.hit(FIVE, "alice@example.org", now=T0 + i)
    refused = ratelimit.hit(FIVE, "alice@example.org", now=T0 + 100)
    assert not refused.allowed and refused.remaining == 0
    # The oldest attempt (T0) ages out at T0 + 900.
    assert refused.retry_after == 800
    assert refused.minutes() == 14
    assert ratelimit.peek(FIVE, "alice@example.org", now=T0 + 100) == refused


def test_refused_attempts_are_not_counted(installed):
    for i in range(5):
        ratelimit.hit(FIVE, "alice@example.org", now=T0 + i)
    for t in range(100, 800, 50):  # a client hammering while blocked
        assert not ratelimit.hit(FIVE, "alice@example.org", now=T0 + t).allowed
    # The block still ends when the first counted attempt ages out, not later.
    assert ratelimit.hit(FIVE, "alice@example.org", now=T0 + 900.5).allowed


def test_allowed_again_after_the_window_slides(installed):
    for i in range(5):
        ratelimit.hit(FIVE, "alice@example.org", now=T0 + i * 60)
    assert not ratelimit.peek(FIVE, "alice@example.org", now=T0 + 899).allowed
    # Sliding: at T0+900 only the first attempt has aged out, so exactly one is free.
    again = ratelimit.hit(FIVE, "alice@example.org", now=T0 + 900)
    assert again.allowed and again.remaining == 0
    refused = ratelimit.hit(FIVE, "alice@example.org", now=T0 + 901)
    assert not refused.allowed and refused.retry_after == 59  # next frees at T0+60+900
    assert ratelimit.hit(FIVE, "alice@example.org", now=T0 + 5000).remaining == 4


def test_peek_counts_nothing(installed):
    for _ in range(10):
        assert ratelimit.peek(FIVE, "bob@example.org", now=T0) == Verdict(True, 5, 0)
    assert ratelimit.hit(FIVE, "bob@example.org", now=T0).remaining == 4


def test_keys_and_limits_are_independent(installed):
    other_limit = Limit("test-other", count=5, window=timedelta(minutes=15))
    for i in range(5):
        ratelimit.hit(FIVE, "alice@example.org", now=T0 + i)
    assert not ratelimit.hit(FIVE, "alice@example.org", now=T0 + 10).allowed
    assert ratelimit.hit(FIVE, "bob@example.org", now=T0 + 10).remaining == 4
    assert ratelimit.hit(other_limit, "alice@example.org", now=T0 + 10).remaining == 4


def test_keys_are_normalised(installed):
    ratelimit.hit(FIVE, "Alice@Example.org", now=T0)
    assert ratelimit.hit(FIVE, "  alice@example.ORG ", now=T0).remaining == 3


def test_reset_forgets_attempts(installed):
    for i in range(5):
        ratelimit.hit(FIVE, "alice@example.org", now=T0 + i)
    ratelimit.hit(FIVE, "bob@example.org", now=T0)
    ratelimit.reset(FIVE, "alice@example.org")
    assert ratelimit.hit(FIVE, "alice@example.org", now=T0 + 10).remaining == 4
    assert ratelimit.peek(FIVE, "bob@example.org", now=T0 + 10).remaining == 4


def test_check_all_most_restrictive_wins(installed):
    per_account = Limit("test-signin-account", count=5, window=timedelta(minutes=15))
    per_ip = Limit("test-signin-ip", count=3, window=timedelta(minutes=10))
    checks = lambda email: [(per_account, email), (per_ip, "198.51.100.7")]

    first = ratelimit.check_all(checks("a@example.org"), now=T0)
    assert first == Verdict(True, 2, 0)  # min(4, 2)
    ratelimit.check_all(checks("b@example.org"), now=T0 + 1)
    ratelimit.check_all(checks("c@example.org"), now=T0 + 2)

    refused = ratelimit.check_all(checks("a@example.org"), now=T0 + 60)
    assert not refused.allowed
    assert refused.retry_after == 540  # the IP limit: T0 + 600 - (T0 + 60)
    # All-or-nothing: the refused attempt used none of a@'s per-account budget.
    assert ratelimit.peek(per_account, "a@example.org", now=T0 + 60).remaining == 4

    # Both limits refusing: the longer wait wins.
    for i in range(4):
        ratelimit.hit(per_account, "d@example.org", now=T0 + 100 + i)
    ratelimit.hit(per_account, "d@example.org", now=T0 + 200)
    both = ratelimit.check_all(checks("d@example.org"), now=T0 + 300)
    assert not both.allowed and both.retry_after == 700  # account: T0+100+900-(T0+300)

    # Once the IP window passes the account is fine again.
    assert ratelimit.check_all(checks("a@example.org"), now=T0 + 601).allowed


@pytest.mark.parametrize("use_check_all", [False, True], ids=["hit", "check_all"])
def test_parallel_hits_never_exceed_the_limit(backend, use_check_all):
    limit = Limit("test-parallel", count=5, window=timedelta(minutes=1))
    ip_limit = Limit("test-parallel-ip", count=50, window=timedelta(minutes=1))
    barrier = threading.Barrier(20)
    results: list[bool] = []
    lock = threading.Lock()

    def attempt():
        barrier.wait()
        if use_check_all:
            verdict = ratelimit.combine(backend.hit_all([(limit, "carol@example.org"), (ip_limit, "203.0.113.9")], T0))
        else:
            verdict = backend.hit("carol@example.org", limit, T0)
        with lock:
            results.append(verdict.allowed)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(results) == 20
    assert results.count(True) == 5
    # All-or-nothing: only the 5 allowed attempts were counted against the IP too.
    assert backend.peek("203.0.113.9", ip_limit, T0).remaining == (45 if use_check_all else 50)


# --------------------------------------------------------------------------- memory only


def test_memory_backend_drops_expired_keys_and_caps_its_size(caplog):
    memory = MemoryBackend(max_keys=50, sweep_every=60)
    short = Limit("test-short", count=3, window=timedelta(seconds=30))
    for i in range(40):
        memory.hit(f"user{i}@example.org", short, T0)
    assert len(memory) == 40
    memory.hit("late@example.org", short, T0 + 120)  # sweep: the 40 have expired
    assert len(memory) == 1

    with caplog.at_level(logging.WARNING, logger="gatehouse.ratelimit"):
        for i in range(80):
            memory.hit(f"flood{i}@example.org", short, T0 + 130)
    assert len(memory) == 50
    assert "evicted" in caplog.text
    assert "flood" not in caplog.text  # keys are never logged


# --------------------------------------------------------------------------- redis only


@needs_redis
def test_two_processes_share_counts(make_redis):
    process_a, process_b = make_redis(), make_redis()
    assert process_a.client.connection_pool is not process_b.client.connection_pool
    for i in range(3):
        process_a.hit("dave@example.org", FIVE, T0 + i)
    assert process_b.hit("dave@example.org", FIVE, T0 + 3).remaining == 1
    process_b.hit("dave@example.org", FIVE, T0 + 4)
    assert not process_a.hit("dave@example.org", FIVE, T0 + 5).allowed
    process_a.reset("dave@example.org", FIVE)
    assert process_b.peek("dave@example.org", FIVE, T0 + 5).remaining == 5


@needs_redis
def test_redis_keys_hide_emails_and_ips(make_redis, redis_prefix):
    backend = make_redis()
    backend.hit("Eve@Example.org", FIVE, T0)
    backend.hit("198.51.100.23", FIVE, T0)
    keys = [k.decode() for k in backend.client.scan_iter(match=f"{redis_prefix}:*")]
    assert len(keys) == 2
    for key in keys:
        assert "eve" not in key.lower() and "example" not in key and "198.51" not in key
        prefix, name, digest = key.rsplit(":", 2)
        assert prefix == redis_prefix and name == FIVE.name and len(digest) == 64
    members = [m.decode() for key in keys for m in backend.client.zrange(key, 0, -1)]
    assert all("eve" not in m.lower() and "198" not in m for m in members)
    # Keys expire on their own shortly after the window.
    assert all(0 < backend.client.pttl(key) <= FIVE.seconds * 1000 + 1000 for key in keys)


@needs_redis
def test_default_key_layout_and_hmac_secret(redis_prefix):
    limit = Limit(f"test-layout-{uuid.uuid4().hex[:8]}", count=2, window=timedelta(minutes=1))
    import hashlib

    plain = RedisBackend(REDIS_URL)
    try:
        digest = hashlib.sha256(b"frank@example.org").hexdigest()
        assert plain.storage_key(" Frank@Example.org", limit) == f"gatehouse:rl:{limit.name}:{digest}"
        keyed = RedisBackend(REDIS_URL, secret=b"app secret", prefix=redis_prefix)
        assert digest not in keyed.storage_key("frank@example.org", limit)
        keyed.client.close()
    finally:
        plain.client.close()


@needs_redis
def test_redis_server_clock_when_now_is_omitted(make_redis):
    backend = make_redis()
    limit = Limit("test-clock", count=2, window=timedelta(minutes=1))
    assert backend.hit("gina@example.org", limit).remaining == 1
    assert backend.hit("gina@example.org", limit).remaining == 0
    refused = backend.hit("gina@example.org", limit)
    assert not refused.allowed and 55 <= refused.retry_after <= 60


@needs_redis
def test_script_reloaded_after_script_flush(make_redis):
    backend = make_redis()
    backend.hit("hank@example.org", FIVE, T0)
    backend.client.script_flush()  # what a Redis restart or failover does to the cache
    assert backend.hit("hank@example.org", FIVE, T0 + 1).remaining == 3


# --------------------------------------------------------------------------- configure


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the block ends


@pytest.fixture
def restore_backend():
    previous = ratelimit.get_backend()
    yield
    ratelimit.set_backend(previous)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/0",
        "redis://:s3cret-pw@127.0.0.1:{port}/0",
    ],
    ids=["bad-scheme", "unreachable"],
)
def test_configure_with_a_bad_url_names_the_setting(restore_backend, url):
    url = url.format(port=_closed_port())
    with pytest.raises(RateLimitConfigError) as raised:
        ratelimit.configure(url)
    message = str(raised.value)
    assert "GATEHOUSE_REDIS_URL" in message
    assert "\n" not in message
    assert "s3cret-pw" not in message  # the password is redacted


def test_configure_without_url_uses_memory(restore_backend):
    ratelimit.configure(None)
    assert isinstance(ratelimit.get_backend(), MemoryBackend)
    ratelimit.configure("")
    assert isinstance(ratelimit.get_backend(), MemoryBackend)


@needs_redis
def test_configure_with_redis(restore_backend):
    ratelimit.configure(REDIS_URL)
    backend = ratelimit.get_backend()
    assert isinstance(backend, RedisBackend)
    limit = Limit(f"test-configure-{uuid.uuid4().hex[:8]}", count=1, window=timedelta(minutes=1))
    try:
        assert ratelimit.hit(limit, "ivy@example.org", now=T0).allowed
        assert not ratelimit.hit(limit, "ivy@example.org", now=T0 + 1).allowed
    finally:
        ratelimit.reset(limit, "ivy@example.org")
        backend.client.close()


def test_redis_down_at_runtime_falls_back_to_memory(caplog):
    backend = RedisBackend(f"redis://:pw-xyz@127.0.0.1:{_closed_port()}/0", timeout=0.5, retry_interval=60)
    limit = Limit("test-fallback", count=2, window=timedelta(minutes=1))
    with caplog.at_level(logging.DEBUG, logger="gatehouse.ratelimit"):
        verdicts = [backend.hit("jack@example.org", limit, T0 + i) for i in range(3)]
        peeked = backend.peek("jack@example.org", limit, T0 + 3)
        combined = ratelimit.combine(backend.hit_all([(limit, "jack@example.org")], T0 + 4))
        backend.reset("jack@example.org", limit)
    assert [v.allowed for v in verdicts] == [True, True, False]  # limits still hold, per process
    assert not peeked.allowed and not combined.allowed
    assert backend.fallback.peek("jack@example.org", limit, T0 + 5).remaining == 2  # reset reached memory
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # once per outage, not once per request
    assert "fall back" in warnings[0].getMessage()
    assert "pw-xyz" not in caplog.text and "jack" not in caplog.text


@needs_redis
def test_redis_comes_back_after_an_outage(make_redis, caplog):
    backend = make_redis(retry_interval=0)
    real_client = backend.client
    import redis

    backend.client = redis.Redis.from_url(f"redis://127.0.0.1:{_closed_port()}/0", socket_connect_timeout=0.5)
    backend._script = backend.client.register_script(ratelimit._SCRIPT)
    with caplog.at_level(logging.WARNING, logger="gatehouse.ratelimit"):
        assert backend.hit("kate@example.org", FIVE, T0).remaining == 4  # memory
        backend.client, backend._script = real_client, real_client.register_script(ratelimit._SCRIPT)
        assert backend.hit("kate@example.org", FIVE, T0 + 1).remaining == 4  # Redis again, fresh count
    assert "reachable again" in caplog.text
