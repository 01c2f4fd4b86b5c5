"""Server time of the audit log page on a large log, on SQLite and on PostgreSQL.

Usage: ``.venv/bin/python bench/audit_page.py [EVENTS] [REQUESTS]`` (default 1,000,000
events, 60 requests per case). A script, not a test. For each database it migrates a
throwaway database (a temporary SQLite file; a schema of its own in
``postgresql://postgres@127.0.0.1/test``, or ``GATEHOUSE_BENCH_POSTGRES_URL``, dropped at
the end), bulk-inserts EVENTS hash-chained events spread over a year, eleven
organisations (one parent with two children), 5,000 actors and the real action names,
then asks ``GET /admin/audit`` through the Flask test client (the whole request:
routing, session, query, template) as the parent organisation's owner and as a child
organisation's owner, with each filter, and prints p50 / p95 / max in ms (target: p95
under 50 ms). It also prints how fast the hash chain is checked and the CSV streamed.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg2

from app import create_app
from models import AuditEvent, Organisation, db, is_postgres, open_database
from models.migrations import upgrade
from services import audit, audit_log
from services.accounts import create_local

PASSWORD = "correct horse battery staple"
POSTGRES_URL = os.environ.get("GATEHOUSE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/test")
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
BATCH = 5000

ORGANISATIONS = [  # slug, parent, share of the events
    ("acme", None, 0.30), ("acme-eu", "acme", 0.08), ("acme-us", "acme", 0.07),
    ("globex", None, 0.15), ("initech", None, 0.10), ("umbrella", None, 0.08), ("hooli", None, 0.07),
    ("stark", None, 0.06), ("wayne", None, 0.05), ("tyrell", None, 0.03), ("cyberdyne", None, 0.01),
]
ACTIONS = [  # action, weight, share of failures, failure outcome
    ("sign_in.requested", 20, 0.05, "failure"), ("email.queued", 15, 0, ""), ("email.sent", 14, 0, ""),
    ("sign_in.link_viewed", 10, 0, ""), ("sign_in.completed", 22, 0, ""), ("sign_in.password", 4, 1, "failure"),
    ("sign_in.confirmed", 6, 0, ""), ("sign_in.denied", 0.5, 1, "denied"), ("sign_in.expired", 1, 1, "failure"),
    ("two_factor.verify", 2, 0.9, "failure"), ("sign_out", 4, 0, ""), ("password.change", 0.6, 0.2, "failure"),
    ("email.failed", 0.1, 1, "failure"), ("account.created", 0.2, 0, ""), ("policy.updated", 0.05, 0, ""),
    ("directory.tested", 0.05, 0.3, "failure"), ("sign_in.no_approver", 0.1, 1, "failure"),
]
METHODS = ["password", "email_link", "manager_approval"]
AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0", "Mozilla/5.0 (Macintosh) Safari/17.4",
          "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4) Mobile/15E148", "Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0"]


def load_events(count: int, seed: int = 7) -> float:
    """Insert ``count`` chained events with insert_many in batches; returns seconds taken."""
    rng = random.Random(seed)
    slugs = [slug for slug, _parent, _share in ORGANISATIONS]
    org_weights = [share for _slug, _parent, share in ORGANISATIONS]
    actors = [f"user{n:04d}" for n in range(5000)]
    actor_weights = [1 / (n + 10) for n in range(5000)]  # a few busy people, a long tail
    actions = [a for a, *_ in ACTIONS]
    action_weights = [w for _a, w, *_ in ACTIONS]
    failing = {a: (share, outcome) for a, _w, share, outcome in ACTIONS}
    start = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - dt.timedelta(days=365)
    step = dt.timedelta(days=365) / count
    last = AuditEvent.select().order_by(AuditEvent.id.desc()).first()  # creating the owners wrote events
    previous, event_id = (last.row_hash, last.id) if last else (audit.GENESIS, 0)
    total = event_id + count
    started = time.perf_counter()
    while event_id < total:
        rows = []
        n = min(BATCH, total - event_id)
        orgs = rng.choices(slugs, org_weights, k=n)
        people = rng.choices(actors, actor_weights, k=n)
        kinds = rng.choices(actions, action_weights, k=n)
        for i in range(n):
            event_id += 1
            action = kinds[i]
            share, bad = failing[action]
            outcome = bad if share and rng.random() < share else "success"
            details = {"method": rng.choice(METHODS)} if action == "sign_in.completed" else {"request": f"r{event_id}"}
            actor = "mail-worker" if action.startswith("email.") else people[i]
            row = SimpleNamespace(
                id=event_id, created_at=start + step * (event_id - total + count), organisation=orgs[i], actor=actor, acting_for=None,
                action=action, target=people[i], ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                user_agent=rng.choice(AGENTS), outcome=outcome, details=details, prev_hash=previous)
            row.row_hash = audit.compute_hash(row)
            previous = row.row_hash
            rows.append(vars(row))
        with db.atomic():
            AuditEvent.insert_many(rows).execute()
    if is_postgres():  # ids were given explicitly: move the sequence past them
        db.execute_sql("SELECT setval(pg_get_serial_sequence('audit_event', 'id'), %s)", (total,))
    return time.perf_counter() - started


def create_organisations() -> None:
    made = {}
    for slug, parent, _share in ORGANISATIONS:
        made[slug] = Organisation.create(slug=slug, name=slug.title(), parent=made.get(parent))
    create_local(made["acme"], "olga", "olga@acme.test", role="owner", password=PASSWORD)
    create_local(made["acme-eu"], "erik", "erik@acme-eu.test", role="owner", password=PASSWORD)


def signed_in_client(app, username: str, organisation: str):
    client = app.test_client()
    page = client.get("/login/password").get_data(as_text=True)
    token = CSRF_INPUT.search(page).group(1)
    response = client.post("/login/password", data={"identifier": username, "password": PASSWORD, "csrf_token": token,
                                                    "account_id": organisation})
    assert response.status_code == 303, response.status_code
    return client


def cases(count: int) -> list[tuple[str, str, str]]:
    """(who, label, URL) of the pages to time."""
    deep = count // 3
    return [
        ("olga", "no filter (3 organisations)", "/admin/audit"),
        ("olga", "no filter, page at id N/3", f"/admin/audit?before={deep}"),
        ("olga", "actor (busy)", "/admin/audit?actor=user0001"),
        ("olga", "actor (rare)", "/admin/audit?actor=user4321"),
        ("olga", "target", "/admin/audit?target=user0420"),
        ("olga", "action sign_in.completed", "/admin/audit?action=sign_in.completed"),
        ("olga", "action email.failed (rare)", "/admin/audit?action=email.failed"),
        ("olga", "action group sign_in.*", "/admin/audit?action=sign_in.%2A"),
        ("olga", "outcome denied", "/admin/audit?outcome=denied"),
        ("olga", "organisation acme-us", "/admin/audit?organisation=acme-us"),
        ("olga", "one day", "/admin/audit?from={day}&to={day}"),
        ("olga", "action + outcome + month", "/admin/audit?action=sign_in.password&outcome=failure&from={month}"),
        ("olga", "actor + action", "/admin/audit?actor=user0002&action=sign_in.completed"),
        ("olga", "nothing matches", "/admin/audit?actor=nobody"),
        ("erik", "child org: no filter", "/admin/audit"),
        ("erik", "child org: actor (busy)", "/admin/audit?actor=user0001"),
        ("erik", "child org: outcome denied", "/admin/audit?outcome=denied"),
        ("olga", "HTMX next page (actor)", "/admin/audit?actor=user0001&before={deep}"),
        ("olga", "dashboard", "/admin/"),
    ]


def time_case(client, url: str, requests: int, htmx: bool = False) -> tuple[list[float], int]:
    headers = {"HX-Request": "true", "HX-Target": "audit-results"} if htmx else {}
    timings, rows = [], 0
    for n in range(requests + 3):
        started = time.perf_counter()
        response = client.get(url, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (url, response.status_code)
        if n >= 3:  # the first requests warm caches
            timings.append(elapsed)
        rows = response.get_data(as_text=True).count('class="audit-event"')
    return timings, rows


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) >= 20 else max(values)


def run(label: str, url: str, count: int, requests: int) -> None:
    database = open_database(url)
    db.initialize(database)
    upgrade(database)
    database.connect(reuse_if_open=True)
    create_organisations()
    seconds = load_events(count)
    print(f"\n{label}: {count:,} events inserted in {seconds:.1f} s ({count / seconds:,.0f}/s)")
    if label == "PostgreSQL":
        database.execute_sql("ANALYZE audit_event")
    database.close()
    measure(label, url, count, requests)


def measure(label: str, url: str, count: int, requests: int) -> None:
    """Time the pages, the chain check and the CSV on a loaded database."""
    with tempfile.TemporaryDirectory() as instance:
        app = create_app({"ENV_NAME": "testing", "SECRET_KEY": "bench-secret-key-" * 3, "DATABASE_URL": url,
                          "INSTANCE_PATH": instance, "SERVER_URL": "http://gatehouse.bench", "WTF_CSRF_ENABLED": True})
        clients = {"olga": signed_in_client(app, "olga", "acme"), "erik": signed_in_client(app, "erik", "acme-eu")}
        now = dt.datetime.now(dt.timezone.utc).date()
        values = {"day": (now - dt.timedelta(days=100)).isoformat(), "month": (now - dt.timedelta(days=30)).isoformat(),
                  "deep": count // 2}
        print(f"{'case':<36} {'rows':>5} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        worst = 0.0
        for who, case, path in cases(count):
            path = path.format(**values)
            htmx = case.startswith("HTMX")
            timings, rows = time_case(clients[who], path, requests, htmx=htmx)
            worst = max(worst, p95(timings))
            print(f"{case:<36} {rows:>5} {statistics.median(timings):>8.1f} {p95(timings):>8.1f} {max(timings):>8.1f}")
        print(f"worst p95: {worst:.1f} ms (target < 50 ms)")

        with app.app_context():
            db.connect(reuse_if_open=True)
            started = time.perf_counter()
            result = audit.verify_from(0, audit.GENESIS, deadline=time.monotonic() + 3)
            elapsed = time.perf_counter() - started
            db.close()
        print(f"hash chain check: {result.checked / elapsed:,.0f} events/s "
              f"(the whole log ≈ {count / (result.checked / elapsed):.0f} s, in {audit_log.VERIFY_STEP_SECONDS:.0f} s steps)")

        started = time.perf_counter()
        response = clients["olga"].get("/admin/audit/export.csv?action=sign_in.completed", buffered=False)
        lines = sum(chunk.count(b"\n") for chunk in response.response)
        response.close()
        elapsed = time.perf_counter() - started
        print(f"CSV export (action sign_in.completed, 3 organisations): {lines - 1:,} rows in {elapsed:.1f} s "
              f"({(lines - 1) / elapsed:,.0f} rows/s, streamed)")
        database = app.extensions["gatehouse.database"]
        if hasattr(database, "close_all"):
            database.close_all()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    only = os.environ.get("GATEHOUSE_BENCH_ONLY", "")
    if only in ("", "sqlite"):
        with tempfile.TemporaryDirectory() as directory:
            run("SQLite", f"sqlite:///{directory}/bench.db", count, requests)
    if only in ("", "postgres"):
        schema = f"bench_audit_{os.getpid()}"
        try:
            admin = psycopg2.connect(POSTGRES_URL, connect_timeout=3)
        except psycopg2.OperationalError as exc:
            print(f"\nPostgreSQL not reachable at {POSTGRES_URL}: {str(exc).strip().splitlines()[0]}")
            return
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE SCHEMA "{schema}"')
        try:
            run("PostgreSQL", f"{POSTGRES_URL}?options=-csearch_path%3D{schema}", count, requests)
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP SCHEMA "{schema}" CASCADE')
            admin.close()


if __name__ == "__main__":
    main()
