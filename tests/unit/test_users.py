"""services.users without a web app: prefix search order and keyset paging (one and
several organisations), the CSV import checks and its all-or-nothing write, export."""

from __future__ import annotations

import csv
import io

import pytest

from models import Account, AuditEvent, Organisation
from services import users


@pytest.fixture
def acme(database):
    return Organisation.create(slug="acme", name="Acme")


def add(organisation, username, email=None, display_name="", **fields):
    return Account.create(organisation=organisation, username=username, email=email or f"{username}@x.test",
                          display_name=display_name or username, **fields)


def every_page(organisation, filters, limit):
    """All rows, following the cursors page by page."""
    seen, after = [], None
    while True:
        page = users.search(organisation, filters, after=after, limit=limit, include_directories=False)
        seen += [a.username for a in page.accounts]
        if page.next_after is None:
            return seen
        after = page.next_after


def test_username_matches_come_first_then_email_then_name(acme):
    add(acme, "zed", email="sam.z@x.test")            # email match
    add(acme, "sammy")                                 # username match
    add(acme, "yan", email="y@x.test", display_name="Sam Yan")   # display name match
    add(acme, "sam", email="sam@x.test", display_name="Sam")     # matches all three: listed once, as a username
    add(acme, "other", display_name="Other Person")
    page = users.search(acme, users.Filters(query="SAM"), include_directories=False)
    assert [a.username for a in page.accounts] == ["sam", "sammy", "zed", "yan"]


def test_a_later_word_of_the_name_finds_the_user_after_the_other_matches(acme):
    add(acme, "jsmith", display_name="John Smith")
    add(acme, "mas", display_name="Mary Ann Smith")
    add(acme, "smithers", display_name="Waylon Smithers")   # username match
    add(acme, "sue", display_name="Smith Sue")              # display name match (first word)
    add(acme, "twice", display_name="Smith Smith Smithson")  # first word and later words: listed once
    add(acme, "other", display_name="Other Blacksmith")     # "smith" inside a word is no match
    add(acme, "spaced", display_name="Lee  Van   Smithe")    # words apart by several spaces
    page = users.search(acme, users.Filters(query="smith"), include_directories=False)
    # Username, then display name (in name order), then the second word, then the third.
    assert [a.username for a in page.accounts] == ["smithers", "twice", "sue", "jsmith", "mas", "spaced"]
    assert [a.username for a in users.search(acme, users.Filters(query="van")).accounts] == ["spaced"]
    assert [a.username for a in users.search(acme, users.Filters(query="Ann Smi")).accounts] == ["mas"]
    assert [a.username for a in users.search(acme, users.Filters(query="blacksmith")).accounts] == ["other"]
    assert every_page(acme, users.Filters(query="smith"), 1) == [a.username for a in page.accounts]


@pytest.mark.parametrize("limit", [1, 2, 3, 50])
def test_paging_returns_every_match_once_across_columns_and_organisations(acme, limit):
    child = Organisation.create(slug="kid", name="Kid", parent=acme)
    grandchild = Organisation.create(slug="gkid", name="Gkid", parent=child)
    for index, org in enumerate([acme, child, grandchild] * 3):
        add(org, f"al{index}")
        add(org, f"x{index}", email=f"al.x{index}@x.test")
        add(org, f"y{index}", display_name=f"Al Y{index}")
        add(org, f"b{index}")
    everyone = every_page(acme, users.Filters(query="al"), limit)
    assert len(everyone) == len(set(everyone)) == 27
    assert everyone[:9] == sorted(f"al{i}" for i in range(9))
    assert every_page(child, users.Filters(query="al"), limit) == [n for n in everyone if int(n[-1]) % 3 != 0]
    assert len(every_page(acme, users.Filters(), limit)) == 36


def test_filters_and_literal_wildcards(acme):
    add(acme, "a_b")
    add(acme, "axb", status="inactive")
    add(acme, "apc", role="team")
    assert [a.username for a in users.search(acme, users.Filters(query="a_"), include_directories=False).accounts] == ["a_b"]
    assert [a.username for a in users.search(acme, users.Filters(query="a", status="inactive")).accounts] == ["axb"]
    assert [a.username for a in users.search(acme, users.Filters(query="a", role="team")).accounts] == ["apc"]


def test_filters_from_request_arguments_are_tolerant():
    filters = users.Filters.from_args({"q": "  ann\x00  smith ", "source": "ldap", "role": "god", "status": "active"})
    assert (filters.query, filters.source, filters.role, filters.status) == ("ann smith", "all", "", "active")
    assert users.decode_after("7:2:YW5u") is None  # no stream 7
    assert users.decode_after("0:5:YW5u") == (0, "ann", 5)
    for garbage in ("0:5:a\x00", "0:5:ann", "0:5:é", "0:x:YW5u", "0:5", "0:5:" + "A" * 3000, None, 7):
        assert users.decode_after(garbage) is None, garbage


def test_names_with_any_character_page_to_the_end(acme):
    """A sort key may hold a tab, a colon or a 320-character email: the cursor carries it
    whole, so paging (and the export that pages to the end) moves on and stops."""
    add(acme, "tab", display_name="Ann\tSmith")
    add(acme, "colon", display_name="Ann: Smith")
    add(acme, "newline", display_name="Ann\nSmith Jr")
    add(acme, "long", email="ann" + "x" * 300 + "@x.test", display_name="Ann Long")
    add(acme, "plain", display_name="Ann Plain")
    expected = sorted(["tab", "colon", "newline", "long", "plain"])
    assert sorted(every_page(acme, users.Filters(query="ann"), 1)) == expected
    assert sorted(a.username for a in users.all_matching(acme, users.Filters(query="ann"))) == expected


# -- import ----------------------------------------------------------------------


def test_preview_checks_header_rows_and_duplicates(acme):
    add(acme, "taken", email="used@x.test")
    preview = users.preview_import(acme, "Username,E-mail\nann,a@x.test\n", actor_role="owner")
    assert preview.error and "Wrong header" in preview.error
    text = ("email,username,role\n"
            "a@x.test,ann,user\n"
            "A@X.TEST,bob,user\n"
            "used@x.test,cy,user\n"
            "d@x.test,taken,user\n"
            "e@x.test,ann,user\n"
            "f@x.test,fay,owner\n"
            "g@x.test,gus,admin\n")
    preview = users.preview_import(acme, text, actor_role="technician")
    errors = {row.values["username"]: row.errors for row in preview.rows if row.errors}
    assert not preview.ok and preview.rows[0].errors == []
    assert "also on line 2" in errors["bob"][0]
    assert "already belongs" in errors["cy"][0]
    assert "already taken" in errors["taken"][0]
    assert "also on line 2" in errors["ann"][0]
    assert "does not let you give the role owner" in errors["fay"][0]
    assert "is not one of" in errors["gus"][0]


def test_preview_of_a_good_file_and_the_import_creates_everyone(acme):
    text = "username,email,display_name,sponsor_email\nann,a@x.test,Ann,boss@x.test\nbob,b@x.test,,\n"
    preview = users.preview_import(acme, text, actor_role="team")
    assert preview.ok and [r.values["username"] for r in preview.rows] == ["ann", "bob"]
    assert Account.select().count() == 0
    created = users.import_users(acme, text, actor_role="team", actor="tess")
    assert [a.username for a in created] == ["ann", "bob"]
    assert Account.get(Account.username == "ann").sponsor_email == "boss@x.test"
    event = AuditEvent.get(AuditEvent.action == "users.imported")
    assert event.actor == "tess" and event.details["count"] == 2


def test_import_writes_nothing_when_one_row_is_bad(acme):
    text = "username,email\nann,a@x.test\nbob,not-an-address\n"
    with pytest.raises(users.UserError, match="nothing was imported"):
        users.import_users(acme, text, actor_role="owner", actor="olga")
    assert Account.select().count() == 0
    assert AuditEvent.select().where(AuditEvent.action == "users.imported").count() == 0


def test_import_limits(acme):
    with pytest.raises(users.UserError, match="at most 512 KB"):
        users.decode_csv(b"x" * (users.MAX_CSV_BYTES + 1))
    rows = "".join(f"u{n},u{n}@x.test\n" for n in range(users.MAX_CSV_ROWS + 1))
    preview = users.preview_import(acme, "username,email\n" + rows, actor_role="owner")
    assert preview.error and "more than 5,000 users" in preview.error


# -- create, edit, export ------------------------------------------------------------


def test_create_and_update_check_every_field(acme):
    with pytest.raises(users.UserError) as refused:
        users.create_user(acme, {"username": "a b", "email": "x", "sponsor_email": "y", "role": "owner"},
                          actor_role="team", actor="tess")
    assert set(refused.value.errors) == {"username", "email", "sponsor_email", "role"}
    ann = users.create_user(acme, {"username": "ann", "email": "ann@x.test", "role": "user"}, actor_role="team",
                            actor="tess")
    assert ann.display_name == "ann" and ann.password_hash is None
    with pytest.raises(users.UserError) as control:
        users.update_user(ann, {"email": "ann@x.test\x00", "display_name": ""}, actor_role="owner", actor="olga")
    assert "control characters" in control.value.errors["email"][0]
    users.update_user(ann, {"email": "ann@y.test", "display_name": "Ann"}, actor_role="owner", actor="olga")
    assert Account.get_by_id(ann.id).email == "ann@y.test"


def test_export_lists_every_page_and_defuses_formulas(acme):
    for n in range(620):
        add(acme, f"u{n:04d}")
    add(acme, "=cmd", email="evil@x.test", display_name="@SUM(A1)")
    text = users.export_csv(acme, users.Filters(), actor="olga")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == 621
    evil = next(r for r in rows if r["email"] == "evil@x.test")
    assert evil["username"] == "'=cmd" and evil["display_name"] == "'@SUM(A1)"


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_prefix_with_punctuation_is_found_under_a_collation_that_ignores_it(acme):
    """Databases are often created with a collation that sorts "ann.smith" as "annsmith";
    the search compares in code-point order, so "ann." still finds it."""
    from models import db

    db.execute_sql("CREATE COLLATION IF NOT EXISTS gatehouse_ignore_punctuation "
                   "(provider = icu, locale = 'und-u-ka-shifted')")
    columns = (("email", 320), ("username", 256))
    try:
        for column, length in columns:
            db.execute_sql(f'ALTER TABLE account ALTER COLUMN {column} TYPE VARCHAR({length}) '
                           'COLLATE gatehouse_ignore_punctuation')
        [ignored] = db.execute_sql("SELECT ('ann.smith' COLLATE gatehouse_ignore_punctuation) < 'ann/'").fetchone()
        assert ignored is False  # the collation really ignores the dot
        add(acme, "ann.smith", email="ann.smith@x.test")
        add(acme, "annika", email="annika@x.test")
        for query in ("ann.", "ann.s", "ANN.SMITH@"):
            page = users.search(acme, users.Filters(query=query), include_directories=False)
            assert [a.username for a in page.accounts] == ["ann.smith"], query
    finally:  # the PostgreSQL test database is shared by the session: put the columns back
        for column, length in columns:
            db.execute_sql(f'ALTER TABLE account ALTER COLUMN {column} TYPE VARCHAR({length}) COLLATE "default"')


def test_the_later_word_searches_walk_their_indexes(acme, monkeypatch):
    """Each later-word stream is one range of its expression index (migration m0009), on
    SQLite and on PostgreSQL: the query's expression is the index's, literally."""
    from models import db, is_postgres

    for index in range(30):
        add(acme, f"user{index}", display_name=f"Mary Ann{index} Smith{index}")
    statements = []
    real = type(db.obj).execute_sql
    monkeypatch.setattr(type(db.obj), "execute_sql",
                        lambda self, sql, params=None, *a, **k: statements.append((sql, params)) or real(self, sql, params, *a, **k))
    assert len(users.search(acme, users.Filters(query="smith"), include_directories=False).accounts) == 30
    monkeypatch.undo()

    def sorted_by(sql):  # the expression a stream's query selects as its sort key
        return sql.split(' AS "sort_key"')[0].rsplit('", (', 1)[-1] if ' AS "sort_key"' in sql else ""

    streams = [(sql, params) for sql, params in statements if "CASE WHEN" in sorted_by(sql)]
    searches = {"name_word2": next(s for s in streams if " AND " not in sorted_by(s[0])),
                "name_word3": next(s for s in streams if " AND " in sorted_by(s[0]))}
    for name, (sql, params) in searches.items():
        if is_postgres():
            db.execute_sql("SET enable_seqscan = off")  # a tiny table would be read whole otherwise
            try:
                plan = " ".join(row[0] for row in db.execute_sql("EXPLAIN " + sql, params).fetchall())
            finally:
                db.execute_sql("SET enable_seqscan = on")
        else:
            plan = " ".join(str(row[-1]) for row in db.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
        assert f"account_search_{name}" in plan, plan
        # The prefix is the index range, not a filter over the organisation's accounts.
        ranged = "<expr>>? AND <expr><?" in plan if not is_postgres() else "END)::text >= 'smith'" in plan.split(
            "Index Cond:", 1)[-1].split("Filter:", 1)[0]
        assert ranged, plan
