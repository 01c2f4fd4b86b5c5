"""LDAP directories through ldap3: building connections and checking reachability.

The lookups (users, managers, groups) arrive with the directories issue; this module
already owns how a ``Directory`` row becomes an ldap3 connection, so health checks and
later lookups share one place that knows about failover, TLS and timeouts.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

import ldap3
from ldap3.core.exceptions import LDAPException

from models import Directory

from . import crypto


@dataclass
class ConnectionCheck:
    """The result of trying a directory: which server answered, bind outcome, time."""

    ok: bool
    server: str = ""
    message: str = ""
    milliseconds: float = 0.0


def _tls(directory: Directory) -> ldap3.Tls | None:
    if directory.tls_mode == "none":
        return None
    return ldap3.Tls(
        validate=ssl.CERT_REQUIRED if directory.verify_certificate else ssl.CERT_NONE,
        ca_certs_file=directory.ca_file or None,
        version=ssl.PROTOCOL_TLS_CLIENT,
    )


def servers(directory: Directory) -> list[ldap3.Server]:
    """The directory's servers in the configured order."""
    tls = _tls(directory)
    return [
        ldap3.Server(
            url,
            use_ssl=url.lower().startswith("ldaps://"),
            tls=tls,
            connect_timeout=directory.connect_timeout,
            get_info=ldap3.NONE,
        )
        for url in directory.servers
    ]


def bind_password(directory: Directory) -> str:
    """The decrypted bind password ('' when none is stored)."""
    return crypto.decrypt(directory.bind_password_encrypted) if directory.bind_password_encrypted else ""


def open_service_connection(directory: Directory) -> ldap3.Connection:
    """Open a connection as the service account to the first server that answers.

    Failover is done here rather than with ldap3's ServerPool, which sleeps ten seconds
    between rounds when every server is down. Raises LDAPException / OSError when none
    answers (the message names each server and why). The connection is opened and
    secured (StartTLS when configured) but not yet bound.
    """
    password = bind_password(directory)
    failures = []
    for server in servers(directory):
        conn = ldap3.Connection(
            server,
            user=directory.bind_dn or None,
            password=password or None,
            receive_timeout=directory.receive_timeout,
            raise_exceptions=False,
            auto_bind=ldap3.AUTO_BIND_NONE,
        )
        try:
            conn.open()
            if directory.tls_mode == "starttls" and not conn.start_tls():
                raise LDAPException(f"StartTLS refused: {conn.result.get('description', '')}")
            return conn
        except (LDAPException, OSError) as exc:
            conn.unbind()
            failures.append(f"{server.name}: {exc}")
    raise LDAPException("; ".join(failures) or "no server is configured")


def check_connection(directory: Directory) -> ConnectionCheck:
    """Connect (with failover), secure and bind; say which server answered and how fast."""
    started = time.perf_counter()
    try:
        conn = open_service_connection(directory)
        bound = conn.bind()
        elapsed = (time.perf_counter() - started) * 1000
        server = conn.server.name
        result = conn.result or {}
        conn.unbind()
    except (LDAPException, OSError, crypto.SecretUnreadable) as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return ConnectionCheck(ok=False, message=f"no server answered: {exc}", milliseconds=elapsed)
    if not bound:
        return ConnectionCheck(
            ok=False, server=server, milliseconds=elapsed,
            message=f"server reached but bind refused: {result.get('description', 'unknown')} {result.get('message', '')}".strip(),
        )
    return ConnectionCheck(ok=True, server=server, message="bind succeeded", milliseconds=elapsed)
