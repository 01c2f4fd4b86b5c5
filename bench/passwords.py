"""Rough cost of passwords and TOTP: one bare argon2id hash with the production
parameters, password sign-ins per second through the real app, and µs per TOTP check.

Usage: ``.venv/bin/python bench/passwords.py [SECONDS] [CLIENTS]`` (default 5 seconds
per case, 2 × cores clients). A script, not a test: it builds a throwaway app on a
temporary SQLite database, serves it with a threaded werkzeug server on a loopback port
and signs in through ``POST /login/password`` with N concurrent clients, each with its
own cookie jar and the CSRF token of the page it just fetched. The sign-in rate should
come within 20 % of ``cores / hash time``: the hash is the work, at most one per core.
The clients share the process (and the GIL) with the server, so the rest of a sign-in
(page, CSRF, SQLite writes, audit, session) shows up in the ratio too.
"""

from __future__ import annotations

import http.cookiejar
import os
import re
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyotp
from werkzeug.serving import WSGIRequestHandler, make_server

from app import create_app
from models import Organisation, db, open_database
from models.migrations import upgrade
from services import lockout, passwords, ratelimit, totp
from services.accounts import create_local

PASSWORD = "correct horse battery staple"
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # one line per request would swamp the figures
        pass


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a 303 is the answer we count
        return None


def bare_hash(seconds: float) -> float:
    """Seconds per argon2id hash, one thread, production parameters."""
    passwords.hash_password(PASSWORD)  # warm up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        passwords.hash_password(PASSWORD)
        n += 1
    per_hash = (time.perf_counter() - start) / n
    stored = passwords.hash_password(PASSWORD)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min(seconds, 2.0):
        passwords.hasher.verify(stored, PASSWORD)
        n += 1
    per_verify = (time.perf_counter() - start) / n
    print(f"argon2id hash   (m={passwords.MEMORY_COST_KIB} KiB, t={passwords.TIME_COST}, p={passwords.PARALLELISM}): "
          f"{per_hash * 1000:8.1f} ms   verify: {per_verify * 1000:8.1f} ms")
    return per_verify


def make_app(tmp: str):
    url = f"sqlite:///{Path(tmp) / 'bench.db'}"
    database = open_database(url)
    upgrade(database)
    database.close()
    app = create_app({
        "ENV_NAME": "testing", "SECRET_KEY": "bench-secret-key-that-is-long-enough-for-gatehouse",
        "DATABASE_URL": url, "INSTANCE_PATH": str(Path(tmp) / "instance"), "SERVER_URL": "http://127.0.0.1",
    })
    with app.app_context():
        db.connect(reuse_if_open=True)
        organisation = Organisation.create(slug="acme", name="Acme")
        account = create_local(organisation, "ann", "ann@acme.test", password=PASSWORD)
        db.close()
    return app, account


def sign_in_once(base: str) -> bool:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    page = opener.open(f"{base}/login/password?account_id=acme").read().decode()
    token = CSRF_INPUT.search(page).group(1)
    body = urllib.parse.urlencode({"csrf_token": token, "identifier": "ann", "password": PASSWORD,
                                   "account_id": "acme"}).encode()
    try:
        opener.open(f"{base}/login/password", data=body)
    except urllib.error.HTTPError as exc:
        return exc.code == 303
    return False


def sign_ins(app, seconds: float, clients: int) -> float:
    """Successful password sign-ins per second with ``clients`` concurrent clients."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        if not sign_in_once(base):
            raise SystemExit("a sign-in through the app did not answer 303: check the bench set-up")
        ok, failed = [0] * clients, [0] * clients
        stop = time.perf_counter() + seconds

        def worker(slot: int) -> None:
            while time.perf_counter() < stop:
                if sign_in_once(base):
                    ok[slot] += 1
                else:
                    failed[slot] += 1

        start = time.perf_counter()
        workers = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start
    finally:
        server.shutdown()
        server.server_close()
    if sum(failed):
        print(f"  ({sum(failed)} sign-ins did not answer 303)")
    return sum(ok) / elapsed


def totp_cost(app, account, seconds: float) -> None:
    """µs per services.totp.verify (a right, unused code, and a wrong code)."""
    with app.app_context():
        db.connect(reuse_if_open=True)
        secret, _ = totp.start_enrolment(account)
        totp.confirm_enrolment(account, pyotp.TOTP(secret).now())
        generator = pyotp.TOTP(secret)
        base = time.time() + 3600
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 2:
            now = base + 30 * n  # every call a new time step, so its code is unused
            totp.verify(account, generator.at(now), now=now)
            n += 1
        right = (time.perf_counter() - start) / n
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / 2:
            totp.verify(account, "000000", now=base)
            n += 1
        wrong = (time.perf_counter() - start) / n
        db.close()
    print(f"totp.verify (what the code step adds to its endpoint): right code {right * 1e6:8.0f} µs/call, "
          f"wrong code {wrong * 1e6:8.0f} µs/call (target < 1,000 µs)")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(available) > 2:
        os.sched_setaffinity(0, available[:2])  # the figure is for two cores, whatever the machine has
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 2 * cores
    ratelimit.set_backend(ratelimit.MemoryBackend())
    # The per-IP limit (100 / 15 min) would refuse a benchmark from one address.
    lockout.ATTEMPTS_PER_IP = ratelimit.Limit("password-attempts-per-ip", 10**9, timedelta(minutes=15))
    per_hash = bare_hash(seconds)
    expected = cores / per_hash
    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-") as tmp:
        app, account = make_app(tmp)
        rate = sign_ins(app, seconds, clients)
        print(f"sign-ins/s through the app ({clients} clients): {rate:8.1f}   cores / hash time ({cores} / "
              f"{per_hash * 1000:.1f} ms): {expected:8.1f}   ratio: {rate / expected:5.2f} (target 0.80 to 1.20)")
        totp_cost(app, account, min(seconds, 4.0))


if __name__ == "__main__":
    main()
