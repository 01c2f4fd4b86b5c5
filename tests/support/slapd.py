"""Pytest plugin: throwaway OpenLDAP slapd and embedded LDAP servers for tests.

Owns starting/stopping real LDAP servers for the test suite:

* ``slapd`` (session fixture): one real OpenLDAP ``slapd`` on 127.0.0.1 with two
  mdb databases, ``dc=example,dc=org`` (ldap_fixtures/openldap.ldif) and
  ``dc=corp,dc=example`` (ldap_fixtures/ad.ldif + ldap_fixtures/ad.schema).
* ``embedded_ldap`` (session fixture): the Acme demo directory
  (ldap_fixtures/demo.ldif) served by ``devtools.ldap_server``.
* ``start_slapd(workdir, port=None)`` for tests that need a private slapd
  (e.g. to stop and restart it for failover tests).

How memberOf works here: slapd.conf loads the ``memberof`` overlay on both
databases, but slapadd does not run overlays. So every LDIF record whose
objectClass is ``groupOfNames`` is held back from ``slapadd`` and added over
LDAP as the rootdn right after slapd starts; the overlay then maintains
``memberOf`` (operational: returned only when asked for by name or ``+``).
Group records are added in file order, so inner (nested) groups must come
before the groups containing them. Data lives in the workdir's mdb files,
so ``Slapd.stop()`` + ``Slapd.start()`` keeps it (groups are not re-added).

Access control: ``userPassword`` is usable for bind only (``self`` may write);
everything else is world-readable.

Processes are tracked by PID only and killed by PID (SIGTERM, then SIGKILL),
also on every failure path.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "ldap_fixtures"
SLAPD_BIN = Path("/usr/sbin/slapd")
SLAPADD_BIN = Path("/usr/sbin/slapadd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
NOT_INSTALLED = (
    "slapd is not installed: run `make test` (it installs slapd ldap-utils) "
    "or apt-get install slapd ldap-utils"
)
START_TIMEOUT = 10.0

ADMIN_PASSWORD = "admin-secret"

# Suffix -> (LDIF file, rootdn). Public so tests can refer to them.
EXAMPLE_SUFFIX = "dc=example,dc=org"
CORP_SUFFIX = "dc=corp,dc=example"
EXAMPLE_ADMIN_DN = "cn=admin,dc=example,dc=org"
CORP_ADMIN_DN = "cn=admin,dc=corp,dc=example"
DATABASES = (
    (EXAMPLE_SUFFIX, "openldap.ldif", EXAMPLE_ADMIN_DN),
    (CORP_SUFFIX, "ad.ldif", CORP_ADMIN_DN),
)
# Bind (service) accounts in the fixtures.
EXAMPLE_SERVICE_DN = "cn=gatehouse-svc,ou=services,dc=example,dc=org"
EXAMPLE_SERVICE_PASSWORD = "secret-gatehouse-svc"
CORP_SERVICE_DN = "CN=svc-gatehouse,OU=Service Accounts,DC=corp,DC=example"
CORP_SERVICE_PASSWORD = "secret-svc-gatehouse"
DEMO_SERVICE_DN = "cn=gatehouse,ou=services,dc=acme,dc=test"
DEMO_SERVICE_PASSWORD = "gatehouse-bind"
DEMO_USER_PASSWORD = "demo-password"

_GROUP_RE = re.compile(r"^objectClass:\s*groupOfNames\s*$", re.IGNORECASE | re.MULTILINE)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _kill_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM ``pid``, wait, SIGKILL if still alive (our child only)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def split_ldif(text: str) -> tuple[str, str]:
    """Split LDIF text into (non-group records, groupOfNames records)."""
    blocks = re.split(r"\n[ \t]*\n", text)
    base, groups = [], []
    for block in blocks:
        lines = [ln for ln in block.splitlines() if not ln.startswith("#")]
        body = "\n".join(lines).strip()
        if not body or not re.search(r"^dn::?", body, re.IGNORECASE | re.MULTILINE):
            continue
        (groups if _GROUP_RE.search(body) else base).append(body)
    return "\n\n".join(base) + "\n", "\n\n".join(groups) + "\n"


@dataclass
class Slapd:
    """A throwaway OpenLDAP slapd bound to 127.0.0.1:port."""

    workdir: Path
    conf: Path
    port: int
    admin_dn: str = EXAMPLE_ADMIN_DN
    admin_password: str = ADMIN_PASSWORD
    corp_admin_dn: str = CORP_ADMIN_DN
    pid: int | None = None
    tls_port: int | None = None  # ldaps:// listener when TLS material was given
    ca_file: Path | None = None  # what clients must trust for StartTLS and LDAPS
    _proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """``ldap://127.0.0.1:PORT``."""
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        """``ldaps://127.0.0.1:TLS_PORT`` (only when started with TLS material)."""
        if self.tls_port is None:
            raise RuntimeError("this slapd was started without TLS")
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def log_path(self) -> Path:
        """File receiving slapd's stdout/stderr."""
        return self.workdir / "slapd.log"

    def start(self) -> None:
        """(Re)start slapd on the same port with the same data; wait until it accepts."""
        if self._proc is not None and self._proc.poll() is None:
            raise RuntimeError(f"slapd already running (pid {self.pid})")
        listeners = f"{self.url}/" + (f" {self.ldaps_url}/" if self.tls_port else "")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [str(SLAPD_BIN), "-f", str(self.conf), "-h", listeners, "-d", "0"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        self.pid = self._proc.pid
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if _port_open(self.port):
                return
            time.sleep(0.05)
        code = self._proc.poll()
        self.stop()
        pytest.fail(
            f"slapd did not start listening on {self.url} within {START_TIMEOUT:.0f} s "
            f"(exit code {code}). slapd output:\n{self._log_tail()}",
            pytrace=False,
        )

    def stop(self) -> None:
        """Stop slapd by PID and wait for it to exit (idempotent)."""
        if self._proc is not None and self.pid is not None:
            if self._proc.poll() is None:
                _kill_pid(self.pid)
            self._proc.wait(timeout=5)
        self._proc = None

    @property
    def running(self) -> bool:
        """True while the slapd process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:] or "(empty)"
        except OSError:
            return "(no log)"


def _write_conf(workdir: Path, tls=None) -> Path:
    lines = [f"include {SCHEMA_DIR / name}" for name in (
        "core.schema", "cosine.schema", "inetorgperson.schema", "nis.schema")]
    if tls is not None:
        lines += [
            f"TLSCertificateFile {tls.cert_file}",
            f"TLSCertificateKeyFile {tls.key_file}",
            f"TLSCACertificateFile {tls.ca_file}",
        ]
    lines += [
        f"include {FIXTURES / 'ad.schema'}",
        f"modulepath {MODULE_DIR}",
        "moduleload back_mdb",
        "moduleload memberof",
        f"pidfile {workdir / 'slapd.pid'}",
        f"argsfile {workdir / 'slapd.args'}",
        "",
        "access to attrs=userPassword",
        "    by self write",
        "    by anonymous auth",
        "    by * none",
        "access to *",
        "    by * read",
        "",
    ]
    for suffix, _ldif, rootdn in DATABASES:
        dbdir = workdir / ("db-" + suffix.split(",")[0].split("=")[1])
        dbdir.mkdir(parents=True, exist_ok=True)
        lines += [
            "database mdb",
            f'suffix "{suffix}"',
            f'rootdn "{rootdn}"',
            f"rootpw {ADMIN_PASSWORD}",
            f"directory {dbdir}",
            "maxsize 67108864",
            "index objectClass eq",
            "overlay memberof",
            "",
        ]
    conf = workdir / "slapd.conf"
    conf.write_text("\n".join(lines))
    return conf


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n"
            f"{result.stdout}{result.stderr}",
            pytrace=False,
        )


def _add_groups(slapd: Slapd, rootdn: str, ldif_text: str) -> None:
    import ldap3
    from devtools.ldap_server import parse_ldif

    records = parse_ldif(ldif_text)
    if not records:
        return
    conn = ldap3.Connection(
        ldap3.Server(slapd.url, get_info=ldap3.NONE),
        user=rootdn,
        password=ADMIN_PASSWORD,
        auto_bind=True,
        raise_exceptions=False,
    )
    try:
        for dn, attrs in records:
            if not conn.add(dn, attributes=attrs):
                pytest.fail(f"adding group {dn!r} to slapd failed: {conn.result}", pytrace=False)
    finally:
        conn.unbind()


def start_slapd(workdir: Path, port: int | None = None, tls=None) -> Slapd:
    """Build config + databases in ``workdir``, start slapd, load the fixtures.

    With ``tls`` (a TLSMaterial: cert_file, key_file, ca_file) slapd also offers
    StartTLS on its ldap:// port and listens on an ldaps:// port.

    Returns a running :class:`Slapd`; calls ``pytest.fail`` (after killing
    anything it started) if slapd is missing or does not come up.
    """
    if not SLAPD_BIN.exists() or not SLAPADD_BIN.exists():
        pytest.fail(NOT_INSTALLED, pytrace=False)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    conf = _write_conf(workdir, tls)
    group_ldifs = []
    for suffix, ldif_name, rootdn in DATABASES:
        base, groups = split_ldif((FIXTURES / ldif_name).read_text(encoding="utf-8"))
        base_path = workdir / f"{ldif_name}.base"
        base_path.write_text(base, encoding="utf-8")
        _run([str(SLAPADD_BIN), "-f", str(conf), "-b", suffix, "-l", str(base_path)],
             f"slapadd of {ldif_name}")
        group_ldifs.append((rootdn, groups))
    server = Slapd(workdir=workdir, conf=conf, port=port or free_port(),
                   tls_port=free_port() if tls is not None else None, ca_file=tls.ca_file if tls is not None else None)
    server.start()
    try:
        for rootdn, groups in group_ldifs:
            _add_groups(server, rootdn, groups)
    except BaseException:
        server.stop()
        raise
    return server


def raw_simple_bind(port: int, dn: str, password: str, host: str = "127.0.0.1") -> int:
    """Send one LDAPv3 simple bind on a raw socket and return its resultCode.

    Unlike ldap3 this will send an empty password, i.e. an RFC 4513
    "unauthenticated bind", so tests can see what the server does with it.
    """
    from ldaptor.protocols import pureber, pureldap

    decoder = pureldap.LDAPBERDecoderContext_TopLevel(
        inherit=pureldap.LDAPBERDecoderContext_LDAPMessage(
            fallback=pureldap.LDAPBERDecoderContext(fallback=pureber.BERDecoderContext()),
            inherit=pureldap.LDAPBERDecoderContext(fallback=pureber.BERDecoderContext()),
        )
    )
    request = pureldap.LDAPMessage(pureldap.LDAPBindRequest(dn=dn, auth=password), id=1)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(request.toWire())
        buffer = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("server closed the connection before answering the bind")
            buffer += chunk
            try:
                message, _used = pureber.berDecodeObject(decoder, buffer)
            except pureber.BERExceptionInsufficientData:
                continue
            if message is not None:
                return message.value.resultCode


@pytest.fixture(scope="session")
def slapd(tmp_path_factory, smtp_tls_material) -> Slapd:
    """One real slapd per test session serving dc=example,dc=org and dc=corp,dc=example,
    with StartTLS and an ldaps:// port (certificate for 127.0.0.1, trusted via ``ca_file``)."""
    server = start_slapd(tmp_path_factory.mktemp("slapd"), tls=smtp_tls_material)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def embedded_ldap():
    """The Acme demo directory (ldap_fixtures/demo.ldif) served by devtools.ldap_server."""
    from devtools.ldap_server import EmbeddedLDAPServer

    server = EmbeddedLDAPServer([FIXTURES / "demo.ldif"])
    server.start()
    try:
        yield server
    finally:
        server.stop()
