"""Base pages: layout, partials, CSRF, error pages, security headers, health report."""

import json
from html import unescape

import pytest
from flask import abort

from models import Directory, MailServer, Organisation
from services import crypto

PAGES = ["/", "/login"]


@pytest.mark.parametrize("url", PAGES)
def test_pages_render_in_the_layout(client, url):
    response = client.get(url)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<html" in html and 'id="flash-messages"' in html
    assert "/static/vendor/htmx-2.0.11.min.js" in html
    assert 'hx-headers=\'{"X-CSRFToken": "' in html
    assert client.csrf_token


def test_login_form_partial_for_htmx(client):
    client.get("/login")
    response = client.post("/login", {"identifier": ""}, htmx=True, target="login-form")
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "<html" not in html
    assert html.lstrip().startswith('<form id="login-form"')
    assert "Enter your username or email address." in html


def test_login_form_without_javascript_gets_the_page(client):
    client.get("/login")
    response = client.post("/login", {"identifier": ""})
    assert response.status_code == 422
    assert "<html" in response.get_data(as_text=True)


def test_login_without_any_organisation_says_sign_in_is_not_set_up(client):
    client.get("/login")
    response = client.post("/login", {"identifier": "olivia", "method": "email"})
    assert response.status_code == 503
    assert "this installation has no organisation" in response.get_data(as_text=True)


def test_oversize_identifier_is_refused_clearly(client):
    client.get("/login")
    response = client.post("/login", {"identifier": "x" * 5000})
    assert response.status_code == 422
    assert "too long" in response.get_data(as_text=True)


def test_boosted_and_history_restore_requests_get_the_full_page(client):
    for header in ("HX-Boosted", "HX-History-Restore-Request"):
        response = client.get("/login", htmx=True, target="login-form", headers={header: "true"})
        assert "<html" in response.get_data(as_text=True)


def test_post_without_csrf_token_is_refused(client):
    response = client.post("/login", {"identifier": "ann"}, csrf=False)
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)


def test_csrf_token_in_the_htmx_header_is_accepted(client):
    client.get("/login")
    response = client.post("/login", {"identifier": "ann"}, htmx=True, target="login-form")
    assert response.status_code == 503  # accepted (no organisation exists yet), not a CSRF 400


def test_security_headers(client):
    response = client.get("/login")
    csp = response.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"
    assert {"HX-Request", "HX-Target"} <= set(response.headers["Vary"].replace(" ", "").split(","))
    assert "Strict-Transport-Security" not in response.headers  # testing: no TLS


def test_no_inline_scripts_or_styles(client):
    html = client.get("/").get_data(as_text=True)
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    assert "hx-on" not in html


@pytest.fixture
def erring_app(app):
    """The app with routes that fail in each way, registered before the first request."""
    app.add_url_rule("/_test/403", "t403", lambda: abort(403))
    app.add_url_rule("/_test/429", "t429", lambda: abort(429))

    def boom():
        raise RuntimeError("kaboom")

    app.add_url_rule("/_test/500", "t500", boom)
    return app


@pytest.mark.parametrize(
    "method, url, code, title",
    [
        ("get", "/_test/403", 403, "You don't have permission to do that"),
        ("get", "/nothing-here", 404, "Page not found"),
        ("post", "/healthz", 405, "That action isn't possible here"),
        ("get", "/_test/429", 429, "Too many attempts"),
        ("get", "/_test/500", 500, "Something went wrong on our side"),
    ],
)
def test_error_pages_explain_themselves(erring_app, method, url, code, title):
    client = erring_app.test_client()
    response = getattr(client, method)(url)
    html = unescape(response.get_data(as_text=True))
    assert response.status_code == code
    assert title in html and "<html" in html
    assert "kaboom" not in html and "Traceback" not in html

    partial = getattr(client, method)(url, headers={"HX-Request": "true", "HX-Target": "main"})
    body = unescape(partial.get_data(as_text=True))
    assert partial.status_code == code
    assert "<html" not in body and title in body
    assert partial.headers["HX-Retarget"] == "#flash-messages"


def test_healthz_with_nothing_configured(client):
    response = client.get("/healthz")
    data = response.get_json()
    assert response.status_code == 200
    assert data["database"]["ok"] is True
    assert data["status"] == "ok" and data["ldap"] == [] and data["smtp"] == []
    assert data["outbox"] == {"queued": 0, "sending": 0, "sent": 0, "failed": 0}


def test_healthz_reports_ldap_and_smtp_reachability(app, client, embedded_ldap, smtp_server):
    from tests.support.slapd import DEMO_SERVICE_DN, DEMO_SERVICE_PASSWORD
    from tests.support.smtp import free_port

    with app.app_context():
        organisation = Organisation.create(slug="acme", name="Acme")
        Directory.create(
            organisation=organisation, name="demo", servers=[embedded_ldap.url], base_dn="dc=acme,dc=test",
            bind_dn=DEMO_SERVICE_DN, bind_password_encrypted=crypto.encrypt(DEMO_SERVICE_PASSWORD),
        )
        Directory.create(organisation=organisation, name="down", servers=[f"ldap://127.0.0.1:{free_port()}"], base_dn="dc=x", connect_timeout=1, position=1)
        Directory.create(
            organisation=organisation, name="wrong password", servers=[embedded_ldap.url], base_dn="dc=acme,dc=test",
            bind_dn=DEMO_SERVICE_DN, bind_password_encrypted=crypto.encrypt("nope"), position=2,
        )
        MailServer.create(organisation=organisation, name="capture", host="127.0.0.1", port=smtp_server.port, security="none", from_address="a@acme.test")
        MailServer.create(organisation=organisation, name="gone", host="127.0.0.1", port=free_port(), security="none", from_address="a@acme.test", position=1)

    response = client.get("/healthz")
    data = response.get_json()
    assert response.status_code == 200
    assert data["status"] == "degraded"
    ldap = {entry["name"]: entry for entry in data["ldap"]}
    assert ldap["demo"]["ok"] is True and ldap["demo"]["server"] == embedded_ldap.url
    assert ldap["down"]["ok"] is False and "no server answered" in ldap["down"]["error"]
    assert ldap["wrong password"]["ok"] is False and "bind refused" in ldap["wrong password"]["error"]
    smtp = {entry["name"]: entry for entry in data["smtp"]}
    assert smtp["capture"]["ok"] is True
    assert smtp["gone"] == {"name": "gone", "ok": False, "error": "connection refused (is the server running and the port right?)"}
    assert "nope" not in json.dumps(data)


def test_healthz_when_the_database_is_down(tmp_path):
    from tests.support.web import make_app

    app = make_app("postgresql://nobody@127.0.0.1:1/none", tmp_path)
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    data = response.get_json()
    assert data["status"] == "down" and data["database"]["ok"] is False


def test_pages_when_the_database_is_down(tmp_path):
    from tests.support.web import make_app

    app = make_app("postgresql://nobody@127.0.0.1:1/none", tmp_path)
    response = app.test_client().get("/login")
    assert response.status_code == 503
    assert "The database is not answering" in response.get_data(as_text=True)


def test_dev_inbox_exists_only_in_development(client, dev_client):
    assert client.get("/dev/mail").status_code == 404
    assert dev_client.get("/dev/mail").status_code == 200


def test_access_logs_never_show_link_tokens(app, caplog):
    import logging
    import urllib.request

    from tests.support.browser import LiveServer

    token = "Abcdefghijklmnopqrstuvwxyz0123456789-_ABCDE"
    server = LiveServer(app).start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            for path in (f"/l/{token}", f"/a/{token}", f"/invitation/{token}", f"/login/reset/{token}"):
                try:
                    urllib.request.urlopen(f"{server.url}{path}", timeout=5)
                except urllib.error.HTTPError:
                    pass  # 404 for an unknown token is expected; the log line is what matters
    finally:
        server.stop()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for prefix in ("/l/", "/a/", "/invitation/", "/login/reset/"):
        assert f"{prefix}[redacted]" in logged
    assert token not in logged
