"""The demo organisation used by ``make run``: its configuration and its directory users."""

from __future__ import annotations

import base64
from functools import lru_cache
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parent.parent
DEMO_LDIF = ROOT / "ldap_fixtures" / "demo.ldif"
DEMO_CONFIG = Path(__file__).resolve().parent / "demo.toml"
DEMO_BASE_DN = "dc=acme,dc=test"
DEMO_PASSWORD = "demo-password"
DEMO_ORGANISATION = "acme"
DEMO_ADMIN = "admin"


def demo_config(ldap_port: int, smtp_port: int, server_url: str) -> str:
    """The demo organisation as configuration-as-code TOML, pointing at the embedded
    servers, with links in emails built from ``server_url``."""
    return Template(DEMO_CONFIG.read_text(encoding="utf-8")).substitute(
        ldap_port=ldap_port, smtp_port=smtp_port, server_url=server_url)


def read_ldif(path: Path) -> list[dict[str, list[str]]]:
    """Entries of an LDIF file as ``{attribute: [values]}`` (``dn`` included), enough
    for listing the demo users; the LDAP servers use their own parsers."""
    entries, entry, last = [], {}, None
    lines = path.read_text(encoding="utf-8").splitlines() + [""]
    for line in lines:
        if line.startswith("#"):
            continue
        if line.startswith(" ") and last:
            entry[last][-1] += line[1:]
            continue
        if not line.strip():
            if entry:
                entries.append(entry)
            entry, last = {}, None
            continue
        name, _, value = line.partition(":")
        name = name.strip()
        if value.startswith(":"):
            value = base64.b64decode(value[1:].strip()).decode("utf-8")
        else:
            value = value.strip()
        entry.setdefault(name, []).append(value)
        last = name
    return [e for e in entries if "dn" in e]


@lru_cache(maxsize=1)
def demo_users() -> list[dict]:
    """The people of the demo directory: uid, name, title, department, manager uid."""
    if not DEMO_LDIF.exists():
        return []
    users = []
    for entry in read_ldif(DEMO_LDIF):
        if "uid" not in entry or ",ou=people," not in entry["dn"][0]:
            continue
        manager = entry.get("manager", [""])[0]
        users.append(
            {
                "uid": entry["uid"][0],
                "name": entry.get("cn", [""])[0],
                "title": entry.get("title", [""])[0],
                "department": (entry.get("departmentNumber") or entry.get("ou") or [""])[0],
                "mail": entry.get("mail", [""])[0],
                "manager": manager.split(",")[0].partition("=")[2] if manager else "",
            }
        )
    return users


def demo_summary(config) -> dict:
    """What the landing page and ``flask dev`` tell a developer about the demo setup."""
    return {
        "organisation": DEMO_ORGANISATION,
        "ldap_url": f"ldap://127.0.0.1:{config['DEV_LDAP_PORT']}",
        "base_dn": DEMO_BASE_DN,
        "smtp": f"127.0.0.1:{config['DEV_SMTP_PORT']}",
        "users": demo_users(),
        "password": DEMO_PASSWORD,
        "admin": DEMO_ADMIN,
    }


def ensure_demo_admin() -> None:
    """Create the demo organisation's local owner ``admin`` (password ``demo-password``) once."""
    from models import Account, Organisation
    from services.accounts import create_local

    organisation = Organisation.get(Organisation.slug == DEMO_ORGANISATION)
    if not Account.select().where((Account.organisation == organisation) & (Account.username == DEMO_ADMIN)).exists():
        create_local(organisation, DEMO_ADMIN, "admin@acme.test", role="owner", display_name="Demo admin",
                     password=DEMO_PASSWORD, actor="make run")
