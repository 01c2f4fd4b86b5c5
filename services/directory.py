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


def server_pool(directory: Directory) -> ldap3.ServerPool:
    """The directory's servers in order: the first one that answers is used."""
    tls = _tls(directory)
    servers = [
        ldap3.Server(
            url,
            use_ssl=url.lower().startswith("ldaps://"),
            tls=tls,
            connect_timeout=directory.connect_timeout,
            get_info=ldap3.NONE,
        )
        for url in directory.servers
    ]
    return ldap3.ServerPool(servers, ldap3.FIRST, active=1, exhaust=False)


def bind_password(directory: Directory) -> str:
    """The decrypted bind password ('' when none is stored)."""
    return crypto.decrypt(directory.bind_password_encrypted) if directory.bind_password_encrypted else ""


def service_connection(directory: Directory, pool: ldap3.ServerPool | None = None) -> ldap3.Connection:
    """An unbound connection as the directory's service account."""
    return ldap3.Connection(
        pool or server_pool(directory),
        user=directory.bind_dn or None,
        password=bind_password(directory) or None,
        receive_timeout=directory.receive_timeout,
        raise_exceptions=False,
        auto_bind=ldap3.AUTO_BIND_NONE,
    )


def check_connection(directory: Directory) -> ConnectionCheck:
    """Connect (with failover), secure and bind; say which server answered and how fast."""
    started = time.perf_counter()
    try:
        conn = service_connection(directory)
        conn.open()
        if directory.tls_mode == "starttls":
            conn.start_tls()
        bound = conn.bind()
        elapsed = (time.perf_counter() - started) * 1000
        server = conn.server.name if conn.server else ""
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
