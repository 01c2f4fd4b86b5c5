"""Rough cost of passwords and TOTP: one bare argon2id hash with the production
parameters (alone and two at once), password sign-ins per second through the real app,
the server CPU each sign-in costs, and µs per TOTP check.

Usage: ``.venv/bin/python bench/passwords.py [SECONDS] [CLIENTS]`` (default 5 seconds
per case, 2 × cores clients). A script, not a test. It builds a throwaway app on a
temporary SQLite database and serves it, as in production, from a process of its own
(a threaded WSGI server on a loopback port); the clients run in this process, on the same
two cores, and sign in as a browser does: GET the form, then POST ``/login/password``
with its CSRF token and cookie. The sign-in rate should come within 20 % of
``cores / hash time``: the hash is the work, at most one per core.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
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


def bare_hash(seconds: float) -> tuple[float, float]:
    """Seconds per argon2id check, one thread, production parameters; and checks per
    second with two threads at once (what two cores really give: they share memory)."""
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
    counts, stop = [0, 0], time.perf_counter() + min(seconds, 3.0)

    def verify(slot: int) -> None:
        while time.perf_counter() < stop:
            passwords.hasher.verify(stored, PASSWORD)
            counts[slot] += 1

    start = time.perf_counter()
    pair = [threading.Thread(target=verify, args=(i,)) for i in range(2)]
    for thread in pair:
        thread.start()
    for thread in pair:
        thread.join()
    two_at_once = sum(counts) / (time.perf_counter() - start)
    print(f"argon2id hash   (m={passwords.MEMORY_COST_KIB} KiB, t={passwords.TIME_COST}, p={passwords.PARALLELISM}): "
          f"{per_hash * 1000:8.1f} ms   verify: {per_verify * 1000:8.1f} ms   two threads: {two_at_once:6.1f} "
          f"verifies/s ({two_at_once * per_verify / 2:4.2f} of twice one)")
    return per_verify, two_at_once


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


def sign_in_once(port: int) -> bool:
    """GET the form, POST it with its CSRF token and cookie: True when the answer is 303."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/login/password?account_id=acme")
        response = connection.getresponse()
        page = response.read().decode()
        cookies = "; ".join(value.split(";", 1)[0] for key, value in response.getheaders() if key.lower() == "set-cookie")
        body = urllib.parse.urlencode({"csrf_token": CSRF_INPUT.search(page).group(1), "identifier": "ann",
                                       "password": PASSWORD, "account_id": "acme"})
        connection.request("POST", "/login/password", body=body,
                           headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookies})
        response = connection.getresponse()
        response.read()
        return response.status == 303
    finally:
        connection.close()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` so far (Linux), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve_in_child(app) -> tuple[int, int]:
    """Serve ``app`` from a forked process of its own; (pid, port)."""
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    app.extensions["gatehouse.database"].close_all()  # no SQLite connection may cross the fork
    pid = os.fork()
    if pid == 0:  # the server process
        try:
            server.serve_forever()
        finally:
            os._exit(0)
    server.socket.close()
    return pid, server.server_port


def sign_ins(app, seconds: float, clients: int) -> tuple[float, float | None]:
    """(successful password sign-ins per second with ``clients`` concurrent clients,
    server CPU seconds per sign-in)."""
    pid, port = serve_in_child(app)
    try:
        if not sign_in_once(port):
            raise SystemExit("a sign-in through the app did not answer 303: check the bench set-up")
        ok, failed = [0] * clients, [0] * clients
        stop = time.perf_counter() + seconds

        def worker(slot: int) -> None:
            while time.perf_counter() < stop:
                if sign_in_once(port):
                    ok[slot] += 1
                else:
                    failed[slot] += 1

        cpu_before, start = cpu_seconds(pid), time.perf_counter()
        workers = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed, cpu_after = time.perf_counter() - start, cpu_seconds(pid)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    if sum(failed):
        print(f"  ({sum(failed)} sign-ins did not answer 303)")
    server_cpu = (cpu_after - cpu_before) / sum(ok) if cpu_before is not None and cpu_after is not None else None
    return sum(ok) / elapsed, server_cpu


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
    per_hash, two_at_once = bare_hash(seconds)
    expected = cores / per_hash
    with tempfile.TemporaryDirectory(prefix="gatehouse-bench-") as tmp:
        app, account = make_app(tmp)
        rate, server_cpu = sign_ins(app, seconds, clients)
        print(f"sign-ins/s through the app ({clients} clients): {rate:8.1f}   cores / hash time ({cores} / "
              f"{per_hash * 1000:.1f} ms): {expected:8.1f}   ratio: {rate / expected:5.2f} (target 0.80 to 1.20)")
        if server_cpu is not None:
            hashing = min(2, cores) / two_at_once
            print(f"server CPU per sign-in: {server_cpu * 1000:6.1f} ms = about {hashing * 1000:.1f} ms argon2 (two at once) "
                  f"+ {(server_cpu - hashing) * 1000:.1f} ms for the form page, the POST, SQL, session and audit")
        totp_cost(app, account, min(seconds, 4.0))


if __name__ == "__main__":
    main()
