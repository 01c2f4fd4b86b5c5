"""Server time of the admin users search with 10,000 and 100,000 local users, on SQLite
and on PostgreSQL: p50 / p95 / max of ``services.users.search`` (one page of 50, what
the users page runs per keystroke) and of the whole page through the Flask test client.

Usage: ``.venv/bin/python bench/users_search.py [QUERIES] [POSTGRES_URL]`` (default 400
queries per case; PostgreSQL ``postgresql://postgres@127.0.0.1/test``, skipped with a
line when unreachable). A script, not a test. SQLite runs on a temporary file; on
PostgreSQL the script creates a throwaway database next to the one named in the URL and
drops it at the end.

The users are "first.lastN" with realistic first and last names, so short prefixes
match thousands of accounts and longer ones a handful, like typing into the search box.
The queries are prefixes (1 to 8 characters) of the username, email, display name and
surname of random users, a few misses, and "next page" requests of broad searches. Targets: p95
under 50 ms at 100,000 users, and less than 2x from 10,000 to 100,000.
"""

from __future__ import annotations

import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models import Account, Organisation, db, open_database, utcnow  # noqa: E402
from models.migrations import upgrade  # noqa: E402
from services import users  # noqa: E402

FIRST = ("james mary robert patricia john jennifer michael linda david elizabeth william barbara richard susan "
         "joseph jessica thomas sarah charles karen christopher lisa daniel nancy matthew betty anthony sandra "
         "mark margaret donald ashley steven kimberly paul emily andrew donna joshua michelle kenneth carol kevin "
         "amanda brian melissa george deborah timothy stephanie ronald rebecca edward sharon jason laura jeffrey "
         "cynthia ryan kathleen jacob amy gary angela nicholas shirley eric anna jonathan brenda stephen pamela "
         "larry emma justin nicole scott helen brandon samantha benjamin katherine samuel christine gregory debra "
         "alexander rachel frank carolyn patrick janet raymond maria jack olivia dennis heather jerry diane zoe "
         "yusuf xavier quentin ulrike ingrid oskar vera wanda").split()
LAST = ("smith johnson williams brown jones garcia miller davis rodriguez martinez hernandez lopez gonzalez wilson "
        "anderson thomas taylor moore jackson martin lee perez thompson white harris sanchez clark ramirez lewis "
        "robinson walker young allen king wright scott torres nguyen hill flores green adams nelson baker hall "
        "rivera campbell mitchell carter roberts gomez phillips evans turner diaz parker cruz edwards collins "
        "reyes stewart morris morales murphy cook rogers gutierrez ortiz morgan cooper peterson bailey reed kelly "
        "howard ramos kim cox ward richardson watson brooks chavez wood james bennett gray mendoza ruiz hughes "
        "price alvarez castillo sanders patel myers long ross foster jimenez powell jenkins perry russell sullivan "
        "bell coleman butler henderson barnes gonzales fisher vasquez simmons romero jordan patterson alexander "
        "hamilton graham reynolds griffin wallace moreno west cole hayes bryant herrera gibson ellis tran medina "
        "aguilar stevens murray ford castro marshall owens harrison fernandez mcdonald woods washington kennedy "
        "wells vargas henry chen freeman webb tucker guzman burns crawford olson simpson porter hunter gordon "
        "mendez silva shaw snyder mason dixon munoz hunt hicks holmes palmer wagner black robertson boyd rose "
        "stone salazar fox warren mills meyer rice schmidt garza daniels ferguson nichols stephens soto weaver "
        "ryan gardner payne grant dunn kelley spencer hawkins arnold pierce vazquez hansen peters santos hart "
        "bradley knight elliott cunningham duncan armstrong hudson carroll lane riley andrews alvarado ray "
        "delgado berry perkins hoffman johnston matthews pena richards willis carpenter lawrence sandoval").split()
SIZES = (10_000, 100_000)
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1/test"


def fill(organisation: Organisation, count: int, rng: random.Random) -> list[tuple[str, str, str]]:
    """Insert ``count`` local users in batches; return (username, email, display name)."""
    people, now = [], utcnow()
    for n in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        username = f"{first}.{last}{n}"
        people.append((username, f"{last}.{first}{n}@{rng.choice(('example.com', 'corp.example', 'mail.test'))}",
                       f"{first.title()} {last.title()}"))
    with db.atomic():
        for start in range(0, count, 2000):
            Account.insert_many([
                {"organisation": organisation.id, "username": u, "email": e, "display_name": d, "role": "user",
                 "status": rng.choice(("active",) * 9 + ("inactive",)), "source": "local", "created_at": now,
                 "updated_at": now, "permissions": "[]"}
                for u, e, d in people[start:start + 2000]]).execute()
    return people


def workload(people, count: int, rng: random.Random) -> list[tuple[str, bool]]:
    """(query, next page?) pairs: prefixes of real values as someone types them."""
    queries = []
    for _ in range(count):
        username, email, display = rng.choice(people)
        kind = rng.random()
        if kind < 0.05:
            queries.append(("zz" + secrets.token_hex(2), False))  # a miss
            continue
        # Username, email, display name, or the surname (a later word of the display name).
        value = username if kind < 0.5 else (email if kind < 0.65 else (display if kind < 0.8 else display.split()[-1]))
        length = rng.choice((1, 2, 2, 3, 3, 4, 5, 6, 8))
        queries.append((value[:length], kind > 0.9))
    return queries


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def run_service(organisation, queries) -> list[float]:
    """Milliseconds per ``users.search`` call (the next page when asked)."""
    timings = []
    for query, next_page in queries:
        filters = users.Filters(query=query)
        after = None
        if next_page:
            after = users.search(organisation, filters, include_directories=False).next_after
        started = time.perf_counter()
        users.search(organisation, filters, after=after, include_directories=False)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def run_pages(url: str, tmp: str, queries) -> list[float]:
    """Milliseconds per users page (HTMX partial, as typing sends it) through the app."""
    from tests.support.factories import PASSWORD
    from tests.support.web import WebClient, make_app

    app = make_app(url, Path(tmp))
    with app.app_context():
        organisation = Organisation.get(Organisation.slug == "bench")
        from services.accounts import create_local
        if not Account.select().where(Account.username == "bench-owner").exists():
            create_local(organisation, "bench-owner", "owner@bench.test", role="owner", password=PASSWORD)
    client = WebClient(app.test_client())
    client.get("/login/password")
    response = client.post("/login/password", {"identifier": "bench-owner", "password": PASSWORD})
    assert response.status_code == 303, response.status_code
    client.get("/admin/users")  # warm up templates
    timings = []
    for query, _next in queries:
        started = time.perf_counter()
        response = client.get(f"/admin/users?q={query}&source=local", htmx=True, target="user-results")
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return timings


def bench(engine: str, url: str, count: int, queries_wanted: int, tmp: str) -> dict:
    rng = random.Random(count)
    database = open_database(url)
    upgrade(database)
    db.initialize(database)
    database.connect(reuse_if_open=True)
    organisation = Organisation.create(slug="bench", name="Bench")
    started = time.perf_counter()
    people = fill(organisation, count, rng)
    fill_seconds = time.perf_counter() - started
    database.execute_sql("ANALYZE")
    queries = workload(people, queries_wanted, rng)
    run_service(organisation, queries[:50])  # warm caches
    service = run_service(organisation, queries)
    database.close()
    pages = run_pages(url, tmp, queries[: max(50, queries_wanted // 4)])
    figures = {"engine": engine, "users": count, "fill": fill_seconds,
               "p50": statistics.median(service), "p95": percentile(service, 0.95), "max": max(service),
               "page_p95": percentile(pages, 0.95)}
    print(f"{engine:10} {count:>7,} users  search p50 {figures['p50']:6.2f} ms  p95 {figures['p95']:6.2f} ms  "
          f"max {figures['max']:6.1f} ms   whole page p95 {figures['page_p95']:6.1f} ms   "
          f"(filled in {fill_seconds:.1f} s)", flush=True)
    return figures


def sqlite_cases(queries: int) -> list[dict]:
    results = []
    for count in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(bench("SQLite", f"sqlite:///{tmp}/bench.db", count, queries, tmp))
    return results


def postgres_cases(queries: int, admin_url: str) -> list[dict]:
    import psycopg2

    try:
        admin = psycopg2.connect(admin_url, connect_timeout=3)
    except psycopg2.OperationalError as exc:
        print(f"PostgreSQL   skipped: {admin_url} not reachable ({str(exc).strip().splitlines()[0]})")
        return []
    admin.autocommit = True
    results = []
    for count in SIZES:
        name = f"gatehouse_bench_{os.getpid()}_{secrets.token_hex(3)}"
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
        try:
            with tempfile.TemporaryDirectory() as tmp:
                results.append(bench("PostgreSQL", url, count, queries, tmp))
        finally:
            database = db.obj
            if database is not None and hasattr(database, "close_all"):
                database.close_all()
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()
    return results


def main() -> None:
    queries = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    admin_url = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("GATEHOUSE_BENCH_DATABASE_URL", DEFAULT_POSTGRES)
    print(f"users search: {queries} queries per case, page size {users.PAGE_SIZE}, prefix match (see services/users.py)")
    for results in (sqlite_cases(queries), postgres_cases(queries, admin_url)):
        if len(results) == 2:
            small, large = results
            print(f"{large['engine']:10} growth 10k → 100k: p95 x{large['p95'] / small['p95']:.2f} "
                  f"(target < 2), p95 at 100k {'meets' if large['p95'] < 50 else 'MISSES'} the 50 ms target")


if __name__ == "__main__":
    main()
