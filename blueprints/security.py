"""Response headers every page carries: CSP, framing, sniffing, referrer, caching, Vary."""

from __future__ import annotations

import logging
import re

from flask import Flask, request

# Paths that carry a secret: emailed links and support tokens.
SECRET_PATH = re.compile(r"(/(?:l|a|token|invitation|login/reset)/)[A-Za-z0-9_-]{8,}")


def redact(text: str) -> str:
    """``text`` with the token of every secret-carrying path replaced."""
    return SECRET_PATH.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    """Keeps link tokens out of access logs (werkzeug logs every request line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)


def register(app: Flask) -> None:
    """Add the security headers to every response of ``app``, and keep tokens out of the logs."""
    werkzeug_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, RedactTokens) for f in werkzeug_log.filters):
        werkzeug_log.addFilter(RedactTokens())

    @app.after_request
    def _headers(response):
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if app.config.get("SESSION_COOKIE_SECURE"):
            headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
        if response.mimetype == "text/html":
            # The same URL answers with a page or a fragment: caches must keep them apart.
            response.vary.add("HX-Request")
            response.vary.add("HX-Target")
            if request.endpoint != "static":
                headers.setdefault("Cache-Control", "no-store")
        return response
