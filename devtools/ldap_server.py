"""Embedded, read-only LDAP server for development and tests.

Owns: serving one or more LDIF files over real LDAP (v3, plain TCP) on
loopback, using ldaptor for the wire protocol (BER encoding/decoding) and a
private Twisted reactor running in a daemon thread.

ldaptor's own in-memory tree (``ldaptor.inmemory``) is *not* used: it mixes
bytes/str DNs, has a broken substring-final match, cannot hold several
suffixes and has no ``memberOf``. Instead this module keeps a tiny directory
model of its own and only reuses ``ldaptor.protocols.ldap.ldapserver.
BaseLDAPServer`` for the protocol plumbing.

Supported:

* simple bind with DN + ``userPassword`` (plain text, or ``{SSHA}``);
  wrong password or unknown DN -> invalidCredentials (49); anonymous bind
  (empty DN and password) is accepted; an *unauthenticated* bind (DN with
  an empty password, RFC 4513 5.1.2) is refused with unwillingToPerform (53),
  as OpenLDAP does by default; SASL -> authMethodNotSupported (7).
* search with base/one/sub scope, filters and/or/not, equality, presence,
  substrings, >=, <=, ~= (treated as equality), extensible match without a
  matching rule; attribute selection (``*``, ``+``, ``1.1``, names), typesOnly,
  sizeLimit. Attribute names are case-insensitive; values match
  case-insensitively, DN-valued attributes (member, manager, memberOf, ...)
  match by normalised DN.
* ``memberOf`` is computed at load time from every entry's ``member`` /
  ``uniqueMember`` values. Like OpenLDAP's memberof overlay it is operational:
  returned only when asked for by name (or with ``+``), and usable in filters.
* ``userPassword`` is never returned in search results.
* the "Who am I?" extended operation (RFC 4532).
* the root DSE (``namingContexts`` lists every suffix, i.e. every LDIF entry
  whose parent is not in the data).

All write operations answer unwillingToPerform: the data is read-only.

Run ``python -m devtools.ldap_server ldap_fixtures/demo.ldif --port 3389``
to serve the demo directory until Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import errno
import hashlib
import re
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterable

from ldaptor.protocols import pureldap
from ldaptor.protocols.ldap import ldaperrors
from ldaptor.protocols.ldap.ldapserver import BaseLDAPServer
from twisted.internet import error as twisted_error
from twisted.internet import protocol
from twisted.internet.selectreactor import SelectReactor

__all__ = ["EmbeddedLDAPServer", "Directory", "parse_ldif", "normalize_dn"]

# Attributes whose values are DNs (compared by normalised DN).
DN_ATTRIBUTES = frozenset(
    {"member", "uniquemember", "manager", "memberof", "owner", "seealso", "secretary"}
)
# Attributes never sent to clients.
HIDDEN_ATTRIBUTES = frozenset({"userpassword"})
# Operational attributes: only returned when asked for by name or "+".
OPERATIONAL_ATTRIBUTES = frozenset({"memberof", "entrydn"})

WHOAMI_OID = "1.3.6.1.4.1.4203.1.11.3"
_HEX_ESCAPE = re.compile(rb"\\([0-9a-fA-F]{2})")


# --------------------------------------------------------------------------
# LDIF parsing
# --------------------------------------------------------------------------


def parse_ldif(text: str | bytes) -> list[tuple[str, dict[str, list[bytes]]]]:
    """Parse LDIF content records into ``[(dn, {attr: [value bytes]})]``.

    Handles comments, line folding, ``version:`` and base64 (``::``) values.
    Attribute keys keep the spelling of their first occurrence.
    """
    if isinstance(text, str):
        text = text.encode("utf-8")
    logical: list[bytes] = []
    for raw in text.splitlines():
        if raw.startswith(b" ") and logical and logical[-1] != b"":
            logical[-1] += raw[1:]
        else:
            logical.append(raw.rstrip(b"\r"))
    records: list[tuple[str, dict[str, list[bytes]]]] = []
    dn: str | None = None
    attrs: dict[str, list[bytes]] = {}
    keymap: dict[str, str] = {}

    def flush() -> None:
        nonlocal dn, attrs, keymap
        if dn is not None:
            records.append((dn, attrs))
        dn, attrs, keymap = None, {}, {}

    for line in logical + [b""]:
        if line.startswith(b"#"):
            continue
        if not line.strip():
            flush()
            continue
        if b":" not in line:
            raise ValueError(f"LDIF line without ':': {line!r}")
        key, _, rest = line.partition(b":")
        if rest.startswith(b":"):
            value = base64.b64decode(rest[1:].strip())
        elif rest.startswith(b"<"):
            raise ValueError("LDIF URL values (:<) are not supported")
        else:
            value = rest.lstrip(b" ")
        name = key.decode("ascii").strip()
        if dn is None:
            if name.lower() == "version":
                continue
            if name.lower() != "dn":
                raise ValueError(f"LDIF record does not start with dn: {line!r}")
            dn = value.decode("utf-8")
            continue
        if name.lower() == "changetype":
            if value.strip().lower() != b"add":
                raise ValueError("only content records / changetype: add supported")
            continue
        stored = keymap.setdefault(name.lower(), name)
        attrs.setdefault(stored, []).append(value)
    return records


# --------------------------------------------------------------------------
# DN handling
# --------------------------------------------------------------------------


def _split_unescaped(text: str, separators: str) -> list[str]:
    """Split ``text`` on any of ``separators`` not preceded by a backslash."""
    parts, current, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if ch in separators:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape_value(value: str) -> str:
    """Undo RFC 4514 escaping (``\\,`` and ``\\XX`` hex pairs, UTF-8)."""
    raw = value.strip().encode("utf-8")
    if raw.startswith(b"#"):
        return raw.decode("utf-8")
    raw = _HEX_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)
    raw = re.sub(rb"\\(.)", rb"\1", raw)
    return raw.decode("utf-8", errors="replace")


def dn_key(dn: str | bytes) -> tuple[tuple[tuple[str, str], ...], ...]:
    """Return a comparable key for a DN: RDNs as sorted (type, value) pairs.

    Attribute types and values are case-folded, escaping is undone and
    surrounding spaces are ignored, so ``CN=Doe\\, Jane,DC=x`` and
    ``cn=doe\\2C jane, dc=X`` give the same key.
    """
    if isinstance(dn, bytes):
        dn = dn.decode("utf-8", errors="replace")
    if not dn.strip():
        return ()
    rdns = []
    for rdn in _split_unescaped(dn, ",;"):
        avas = []
        for ava in _split_unescaped(rdn, "+"):
            attr, sep, value = ava.partition("=")
            if not sep:
                raise ValueError(f"invalid DN component {ava!r} in {dn!r}")
            avas.append((attr.strip().lower(), _unescape_value(value).casefold()))
        rdns.append(tuple(sorted(avas)))
    return tuple(rdns)


def normalize_dn(dn: str | bytes) -> str:
    """Return a canonical string form of ``dn`` (for display and comparison)."""
    return ",".join("+".join(f"{a}={v}" for a, v in rdn) for rdn in dn_key(dn))


# --------------------------------------------------------------------------
# Directory model
# --------------------------------------------------------------------------


class Entry:
    """One directory entry: DN plus attributes (case-insensitive names)."""

    def __init__(self, dn: str, attributes: dict[str, list[bytes]]):
        """Create an entry from its DN and ``{name: [bytes values]}``."""
        self.dn = dn
        self.key = dn_key(dn)
        self.names: dict[str, str] = {}
        self.values: dict[str, list[bytes]] = {}
        for name, vals in attributes.items():
            self.add(name, vals)

    def add(self, name: str, vals: Iterable[bytes]) -> None:
        """Add values to attribute ``name`` (created if missing)."""
        low = name.lower()
        self.names.setdefault(low, name)
        bucket = self.values.setdefault(low, [])
        for v in vals:
            if v not in bucket:
                bucket.append(v)

    def get(self, name: str) -> list[bytes]:
        """Return the values of ``name`` (empty list when absent)."""
        return self.values.get(name.lower(), [])


def _text(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


class Directory:
    """An in-memory, read-only set of entries loaded from LDIF files."""

    def __init__(self, ldif_paths: Iterable[str | Path]):
        """Load every LDIF file and compute ``memberOf``."""
        self.entries: dict[tuple, Entry] = {}
        for path in ldif_paths:
            for dn, attrs in parse_ldif(Path(path).read_bytes()):
                entry = Entry(dn, attrs)
                if entry.key in self.entries:
                    raise ValueError(f"duplicate entry {dn!r} in {path}")
                self.entries[entry.key] = entry
        self.suffixes = [e.dn for e in self.entries.values() if e.key[1:] not in self.entries]
        self._compute_member_of()

    def _compute_member_of(self) -> None:
        for group in self.entries.values():
            for attr in ("member", "uniquemember"):
                for value in group.get(attr):
                    target = self.entries.get(dn_key(value))
                    if target is not None:
                        target.add("memberOf", [group.dn.encode("utf-8")])

    def lookup(self, dn: str | bytes) -> Entry | None:
        """Return the entry named ``dn`` or None."""
        try:
            return self.entries.get(dn_key(dn))
        except ValueError:
            return None

    def scope(self, base: Entry, scope: int) -> list[Entry]:
        """Entries in ``scope`` (pureldap.LDAP_SCOPE_*) below ``base``."""
        if scope == pureldap.LDAP_SCOPE_baseObject:
            return [base]
        depth = len(base.key)
        out = []
        for entry in self.entries.values():
            if len(entry.key) < depth or entry.key[len(entry.key) - depth :] != base.key:
                continue
            if scope == pureldap.LDAP_SCOPE_singleLevel and len(entry.key) != depth + 1:
                continue
            out.append(entry)
        out.sort(key=lambda e: (len(e.key), e.dn.lower()))
        return out

    # ---- filter evaluation ------------------------------------------------

    def match(self, entry: Entry, flt) -> bool:
        """Evaluate an ldaptor filter object against ``entry``."""
        if isinstance(flt, pureldap.LDAPFilter_and):
            return all(self.match(entry, f) for f in flt)
        if isinstance(flt, pureldap.LDAPFilter_or):
            return any(self.match(entry, f) for f in flt)
        if isinstance(flt, pureldap.LDAPFilter_not):
            return not self.match(entry, flt.value)
        if isinstance(flt, pureldap.LDAPFilter_present):
            name = _text(flt.value).lower()
            return name == "objectclass" or bool(entry.get(name))
        if isinstance(flt, pureldap.LDAPFilter_substrings):
            return self._match_substrings(entry, _text(flt.type), flt.substrings)
        if isinstance(
            flt,
            (
                pureldap.LDAPFilter_equalityMatch,
                pureldap.LDAPFilter_approxMatch,
                pureldap.LDAPFilter_greaterOrEqual,
                pureldap.LDAPFilter_lessOrEqual,
            ),
        ):
            name = _text(flt.attributeDesc.value).lower()
            assertion = flt.assertionValue.value
            if isinstance(flt, pureldap.LDAPFilter_greaterOrEqual):
                return any(self._cmp(name, v, assertion) >= 0 for v in entry.get(name))
            if isinstance(flt, pureldap.LDAPFilter_lessOrEqual):
                return any(self._cmp(name, v, assertion) <= 0 for v in entry.get(name))
            return any(self._cmp(name, v, assertion) == 0 for v in entry.get(name))
        if isinstance(flt, pureldap.LDAPFilter_extensibleMatch):
            if flt.matchingRule is not None or flt.type is None:
                return False
            name = _text(flt.type.value).lower()
            return any(self._cmp(name, v, flt.matchValue.value) == 0 for v in entry.get(name))
        return False

    @staticmethod
    def _cmp(name: str, value: bytes, assertion: bytes | str) -> int:
        if isinstance(assertion, str):
            assertion = assertion.encode("utf-8")
        if name in HIDDEN_ATTRIBUTES:
            return -2  # never matches equality; mimics no EQUALITY for passwords
        if name in DN_ATTRIBUTES:
            try:
                a, b = normalize_dn(value), normalize_dn(assertion)
            except ValueError:
                return -2
        else:
            a, b = _text(value).casefold(), _text(assertion).casefold()
        return (a > b) - (a < b)

    @staticmethod
    def _match_substrings(entry: Entry, name: str, substrings) -> bool:
        for raw in entry.get(name):
            value = _text(raw).casefold()
            pos, ok = 0, True
            for part in substrings:
                piece = _text(part.value).casefold()
                if isinstance(part, pureldap.LDAPFilter_substrings_initial):
                    if not value.startswith(piece):
                        ok = False
                        break
                    pos = len(piece)
                elif isinstance(part, pureldap.LDAPFilter_substrings_final):
                    if len(value) - len(piece) < pos or not value.endswith(piece):
                        ok = False
                        break
                    pos = len(value)
                else:
                    found = value.find(piece, pos)
                    if found < 0:
                        ok = False
                        break
                    pos = found + len(piece)
            if ok:
                return True
        return False

    # ---- result shaping ---------------------------------------------------

    def select(self, entry: Entry, requested: list[bytes], types_only: bool):
        """Return ``[(name, [values])]`` for the requested attribute list."""
        wanted = [_text(r).lower() for r in requested]
        all_user = not wanted or "*" in wanted
        all_oper = "+" in wanted
        out = []
        for low, name in entry.names.items():
            if low in HIDDEN_ATTRIBUTES:
                continue
            if low in OPERATIONAL_ATTRIBUTES:
                keep = all_oper or low in wanted
            else:
                keep = all_user or low in wanted
            if keep:
                out.append((name, [] if types_only else list(entry.values[low])))
        if "entrydn" in wanted or all_oper:
            out.append(("entryDN", [] if types_only else [entry.dn.encode("utf-8")]))
        return out


# --------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------


class _DirectoryLDAPServer(BaseLDAPServer):
    """LDAP protocol handler answering from ``self.factory.directory``."""

    bound_dn = ""

    fail_LDAPBindRequest = pureldap.LDAPBindResponse
    fail_LDAPSearchRequest = pureldap.LDAPSearchResultDone

    def handle_LDAPBindRequest(self, request, controls, reply):
        """Simple bind against ``userPassword``; anonymous bind allowed."""
        directory: Directory = self.factory.directory
        if request.version != 3:
            return pureldap.LDAPBindResponse(
                resultCode=ldaperrors.LDAPProtocolError.resultCode,
                errorMessage="only LDAPv3 is supported",
            )
        if request.sasl:
            return pureldap.LDAPBindResponse(
                resultCode=ldaperrors.LDAPAuthMethodNotSupported.resultCode,
                errorMessage="SASL is not supported",
            )
        dn = _text(request.dn)
        password = request.auth if isinstance(request.auth, bytes) else request.auth.encode()
        if not dn and not password:
            self.bound_dn = ""
            return pureldap.LDAPBindResponse(resultCode=0)
        if not password:
            return pureldap.LDAPBindResponse(
                resultCode=ldaperrors.LDAPUnwillingToPerform.resultCode,
                errorMessage="unauthenticated bind (DN with no password) disallowed",
            )
        entry = directory.lookup(dn) if dn else None
        if entry is not None and _check_password(entry.get("userPassword"), password):
            self.bound_dn = entry.dn
            return pureldap.LDAPBindResponse(resultCode=0)
        self.bound_dn = ""
        return pureldap.LDAPBindResponse(
            resultCode=ldaperrors.LDAPInvalidCredentials.resultCode
        )

    def handle_LDAPUnbindRequest(self, request, controls, reply):
        """Close the connection."""
        self.transport.loseConnection()

    def handle_LDAPSearchRequest(self, request, controls, reply):
        """Evaluate a search and stream entries back through ``reply``."""
        self.checkControls(controls)
        directory: Directory = self.factory.directory
        base_text = _text(request.baseObject)
        if not base_text.strip() and request.scope == pureldap.LDAP_SCOPE_baseObject:
            reply(
                pureldap.LDAPSearchResultEntry(
                    objectName="",
                    attributes=[
                        ("objectClass", ["top"]),
                        ("supportedLDAPVersion", ["3"]),
                        ("namingContexts", directory.suffixes),
                        ("supportedExtension", [WHOAMI_OID]),
                        ("vendorName", ["Gatehouse devtools (ldaptor)"]),
                    ],
                )
            )
            return pureldap.LDAPSearchResultDone(resultCode=0)
        try:
            base = directory.lookup(base_text)
        except ValueError:
            base = None
        if base is None:
            return pureldap.LDAPSearchResultDone(
                resultCode=ldaperrors.LDAPNoSuchObject.resultCode,
                errorMessage=f"no such object: {base_text}",
            )
        sent = 0
        for entry in directory.scope(base, request.scope):
            if not directory.match(entry, request.filter):
                continue
            if request.sizeLimit and sent >= request.sizeLimit:
                return pureldap.LDAPSearchResultDone(
                    resultCode=ldaperrors.LDAPSizeLimitExceeded.resultCode
                )
            reply(
                pureldap.LDAPSearchResultEntry(
                    objectName=entry.dn,
                    attributes=directory.select(
                        entry, request.attributes, bool(request.typesOnly)
                    ),
                )
            )
            sent += 1
        return pureldap.LDAPSearchResultDone(resultCode=0)

    def _read_only(self, response_class):
        return response_class(
            resultCode=ldaperrors.LDAPUnwillingToPerform.resultCode,
            errorMessage="the embedded directory is read-only",
        )

    def handle_LDAPAddRequest(self, request, controls, reply):
        """Refuse: read-only."""
        return self._read_only(pureldap.LDAPAddResponse)

    def handle_LDAPModifyRequest(self, request, controls, reply):
        """Refuse: read-only."""
        return self._read_only(pureldap.LDAPModifyResponse)

    def handle_LDAPDelRequest(self, request, controls, reply):
        """Refuse: read-only."""
        return self._read_only(pureldap.LDAPDelResponse)

    def handle_LDAPModifyDNRequest(self, request, controls, reply):
        """Refuse: read-only."""
        return self._read_only(pureldap.LDAPModifyDNResponse)

    def handle_LDAPExtendedRequest(self, request, controls, reply):
        """Support "Who am I?" (RFC 4532); refuse other extended operations."""
        name = _text(request.requestName)
        if name == WHOAMI_OID:
            authzid = f"dn:{self.bound_dn}" if self.bound_dn else ""
            return pureldap.LDAPExtendedResponse(resultCode=0, response=authzid)
        return pureldap.LDAPExtendedResponse(
            resultCode=ldaperrors.LDAPProtocolError.resultCode,
            errorMessage=f"unsupported extended operation {name}",
        )

    def handle_LDAPAbandonRequest(self, request, controls, reply):
        """Searches are synchronous, nothing to abandon."""
        return None


def _check_password(stored: list[bytes], given: bytes) -> bool:
    for value in stored:
        if value.upper().startswith(b"{SSHA}"):
            raw = base64.b64decode(value[6:])
            digest, salt = raw[:20], raw[20:]
            if hashlib.sha1(given + salt).digest() == digest:
                return True
        elif value == given:
            return True
    return False


class _Factory(protocol.ServerFactory):
    protocol = _DirectoryLDAPServer

    def __init__(self, directory: Directory):
        self.directory = directory


# --------------------------------------------------------------------------
# Public server object
# --------------------------------------------------------------------------


class EmbeddedLDAPServer:
    """Serve LDIF files over LDAP from a private reactor in a daemon thread.

    Each instance owns its own Twisted reactor (not the global one), so
    several servers can run, stop and be created again in one process.
    """

    def __init__(self, ldif_paths, host: str = "127.0.0.1", port: int = 0):
        """Load the LDIF file(s) (a path or a list of paths); nothing listens yet."""
        if isinstance(ldif_paths, (str, Path)):
            ldif_paths = [ldif_paths]
        self.ldif_paths = [Path(p) for p in ldif_paths]
        self.host = host
        self._requested_port = port
        self.directory = Directory(self.ldif_paths)
        self._reactor: SelectReactor | None = None
        self._thread: threading.Thread | None = None
        self._listening_port = None

    @property
    def port(self) -> int:
        """The TCP port actually listened on (after start())."""
        if self._listening_port is None:
            raise RuntimeError("EmbeddedLDAPServer is not started")
        return self._listening_port.getHost().port

    @property
    def url(self) -> str:
        """``ldap://HOST:PORT`` of the running server."""
        return f"ldap://{self.host}:{self.port}"

    def start(self) -> None:
        """Start the reactor thread and listen; return once accepting.

        Raises OSError (EADDRINUSE or the underlying errno) if the port
        cannot be bound.
        """
        if self._thread is not None:
            raise RuntimeError("EmbeddedLDAPServer already started")
        reactor = SelectReactor()
        thread = threading.Thread(
            target=reactor.run,
            kwargs={"installSignalHandlers": False},
            name=f"embedded-ldap-{self.host}:{self._requested_port}",
            daemon=True,
        )
        done = threading.Event()
        outcome: dict = {}

        def listen() -> None:
            try:
                outcome["port"] = reactor.listenTCP(
                    self._requested_port, _Factory(self.directory), interface=self.host
                )
            except BaseException as exc:  # reported to the caller below
                outcome["error"] = exc
            finally:
                done.set()

        thread.start()
        reactor.callFromThread(listen)
        if not done.wait(10):
            reactor.callFromThread(reactor.stop)
            thread.join(5)
            raise RuntimeError("embedded LDAP reactor did not start within 10 s")
        if "error" in outcome:
            reactor.callFromThread(reactor.stop)
            thread.join(5)
            exc = outcome["error"]
            if isinstance(exc, twisted_error.CannotListenError):
                code = getattr(exc.socketError, "errno", None) or errno.EADDRINUSE
                raise OSError(
                    code,
                    f"embedded LDAP server cannot listen on {self.host}:"
                    f"{self._requested_port}: "
                    f"{getattr(exc.socketError, 'strerror', None) or exc.socketError} "
                    "(is another LDAP server already using this port?)",
                ) from exc
            raise exc
        self._reactor, self._thread = reactor, thread
        self._listening_port = outcome["port"]

    def stop(self) -> None:
        """Stop listening, stop the reactor and join its thread (idempotent)."""
        reactor, thread = self._reactor, self._thread
        if reactor is None or thread is None:
            return

        def shutdown() -> None:
            d = self._listening_port.stopListening()
            if d is not None:
                d.addBoth(lambda _: reactor.stop())
            else:
                reactor.stop()

        reactor.callFromThread(shutdown)
        thread.join(10)
        self._reactor = self._thread = None
        self._listening_port = None

    def __enter__(self) -> "EmbeddedLDAPServer":
        """Start on entering a ``with`` block."""
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        """Stop on leaving a ``with`` block."""
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Command line: serve LDIF files until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m devtools.ldap_server",
        description="Serve LDIF files over LDAP on loopback (development only).",
    )
    parser.add_argument("ldif", nargs="+", help="LDIF file(s) to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3389)
    args = parser.parse_args(argv)

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    # Ctrl-C and SIGTERM both stop the server cleanly (even when started with
    # SIGINT ignored, e.g. as a background job of a script).
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    server = EmbeddedLDAPServer(args.ldif, host=args.host, port=args.port)
    try:
        server.start()
    except OSError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(
        f"Serving {', '.join(map(str, server.ldif_paths))} at {server.url} "
        f"(suffixes: {'; '.join(server.directory.suffixes)}); Ctrl-C to stop",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
