"""An emailed sign-in link is single use by one conditional UPDATE: twenty browsers
confirm the same link at the same moment against a real threaded server, and exactly
one of them approves it, on SQLite and on PostgreSQL. The browser that asked for the
link then gets exactly one session."""

from __future__ import annotations

import http.cookiejar
import re
import threading
import urllib.error
import urllib.parse
import urllib.request

from models import SignInRequest, UserSession
from tests.support.browser import LiveServer
from tests.support.web import stored
from tests.web.test_email_signin import acme, deliver, fresh_limits, link_in  # noqa: F401  (fixtures)

CONFIRMERS = 20
HTTP_TIMEOUT = 15  # seconds, for every request
CSRF_INPUT = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class Browser:
    """A urllib opener with its own cookie jar: one browser, one set of cookies."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(self, path: str, form: dict | None = None) -> tuple[int, str, str]:
        """(status, final URL path, body) of a GET, or of a POST when ``form`` is given (redirects followed)."""
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.base_url + path, data=data, timeout=HTTP_TIMEOUT) as response:
                return response.status, urllib.parse.urlsplit(response.url).path, response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, urllib.parse.urlsplit(error.url).path, error.read().decode()

    def csrf(self, body: str) -> str:
        match = CSRF_INPUT.search(body)
        assert match, f"no CSRF token on the page: {body[:500]}"
        return match.group(1)

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)


def test_twenty_concurrent_confirmations_and_exactly_one_wins(app, acme, smtp_server):  # noqa: F811
    server = LiveServer(app).start()
    try:
        asker = Browser(server.url)
        status, _, login_page = asker.request("/login")
        assert status == 200
        status, wait_path, wait_page = asker.request(
            "/login", {"identifier": "ann", "method": "email", "csrf_token": asker.csrf(login_page)})
        assert status == 200 and wait_path.startswith("/login/wait/") and "Check your email" in wait_page
        assert asker.cookie("gatehouse_signin")
        _, token = link_in(deliver(app, smtp_server, 1)[0])

        barrier = threading.Barrier(CONFIRMERS, timeout=HTTP_TIMEOUT)
        results: list[tuple[int, str, str] | BaseException | None] = [None] * CONFIRMERS
        devices = [Browser(server.url) for _ in range(CONFIRMERS)]

        def confirm(index: int) -> None:
            device = devices[index]
            try:
                status, _, page = device.request(f"/l/{token}")
                assert status == 200 and "Sign in to Acme?" in page, (status, page[:500])
                csrf = device.csrf(page)
                barrier.wait()
                results[index] = device.request(f"/l/{token}", {"action": "approve", "csrf_token": csrf})
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                barrier.abort()
                results[index] = exc

        threads = [threading.Thread(target=confirm, args=(i,), name=f"confirm-{i}", daemon=True) for i in range(CONFIRMERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HTTP_TIMEOUT * 3)
        assert not any(thread.is_alive() for thread in threads), "a confirmation never came back"
        failures = [r for r in results if isinstance(r, BaseException)]
        assert not failures, failures

        winners = [r for r in results if r[0] == 200 and "Sign-in approved" in r[2]]
        losers = [r for r in results if r[0] == 410 and "This link has already been used" in r[2]]
        assert len(winners) == 1, [(r[0], re.findall(r"<h1>(.*?)</h1>", r[2])) for r in results]
        assert len(losers) == CONFIRMERS - 1, [(r[0], re.findall(r"<h1>(.*?)</h1>", r[2])) for r in results]
        assert "Go back to the browser where you asked for the link" in winners[0][2]
        # Confirming on another device approves; it never signs that device in.
        assert all(device.cookie("gatehouse_session") is None for device in devices)
        request_row = stored(app, lambda: SignInRequest.get())
        assert request_row.status == "approved"

        # The browser that asked finishes, and gets the one and only session.
        status, _, approved = asker.request(f"{wait_path}/status")
        assert status == 200 and "Approved" in approved
        status, path, account_page = asker.request(f"{wait_path}/finish", {"csrf_token": asker.csrf(approved)})
        assert (status, path) == (200, "/account") and "You are signed in to" in account_page
        assert asker.cookie("gatehouse_session")
        assert stored(app, lambda: SignInRequest.get().status) == "completed"
        assert stored(app, lambda: UserSession.select().count()) == 1
        # A second finish (replay) gets nothing more.
        status, path, _ = asker.request(f"{wait_path}/finish", {"csrf_token": asker.csrf(account_page)})
        assert path == "/login"
        assert stored(app, lambda: UserSession.select().count()) == 1
    finally:
        server.stop()
