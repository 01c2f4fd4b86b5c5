"""Shared fixtures: see tests/support/ (database, web, slapd, smtp, browser)."""

pytest_plugins = [
    "tests.support.database",
    "tests.support.web",
    "tests.support.slapd",
    "tests.support.smtp",
    "tests.support.browser",
    "tests.support.factories",
]
