"""Gatehouse settings: read from ``GATEHOUSE_*`` environment variables.

Every setting has an environment variable ``GATEHOUSE_<NAME>``; secrets may instead be
read from a file named by ``GATEHOUSE_<NAME>_FILE`` (Docker/Kubernetes secrets). In
development a secret key is generated once into the instance folder; anywhere else a
missing secret key is an error, never a default.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ENVIRONMENTS = ("development", "production", "testing")

# Settings that may come from a file (GATEHOUSE_<NAME>_FILE) because they carry secrets.
SECRET_SETTINGS = ("SECRET_KEY", "DATABASE_URL", "REDIS_URL")


class ConfigError(Exception):
    """A setting is missing or wrong; the message is one line saying what to do."""


def _env(environ, name: str) -> str | None:
    """Return GATEHOUSE_<name>, or the content of the file GATEHOUSE_<name>_FILE names."""
    value = environ.get(f"GATEHOUSE_{name}")
    file_name = environ.get(f"GATEHOUSE_{name}_FILE")
    if value is not None and file_name is not None:
        raise ConfigError(
            f"both GATEHOUSE_{name} and GATEHOUSE_{name}_FILE are set: keep only one"
        )
    if file_name is not None:
        if name not in SECRET_SETTINGS:
            raise ConfigError(f"GATEHOUSE_{name}_FILE is not supported: set GATEHOUSE_{name}")
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                f"GATEHOUSE_{name}_FILE names {file_name!r}, which cannot be read "
                f"({exc.strerror or exc}): fix the path or its permissions"
            ) from None
    return value


def _int(environ, name: str, default: int, low: int = 1, high: int = 65535) -> int:
    raw = _env(environ, name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"GATEHOUSE_{name}={raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"GATEHOUSE_{name}={value} must be between {low} and {high}")
    return value


def development_secret_key(instance_path: Path) -> str:
    """Return the development secret key, generating it once into the instance folder."""
    key_file = Path(instance_path) / "secret_key"
    if key_file.exists():
        return key_file.read_text(encoding="utf-8").strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once must not end up with different keys.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_file.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
    return key


def load_settings(instance_path: Path, environ=None) -> dict:
    """Build the Flask config mapping from the environment.

    Raises ConfigError with a one-line explanation when something is missing or wrong.
    """
    environ = os.environ if environ is None else environ
    env_name = (_env(environ, "ENV") or "production").strip().lower()
    if env_name not in ENVIRONMENTS:
        raise ConfigError(
            f"GATEHOUSE_ENV={env_name!r} is not one of {', '.join(ENVIRONMENTS)}"
        )
    development = env_name == "development"

    secret_key = _env(environ, "SECRET_KEY")
    if not secret_key:
        if env_name == "production":
            raise ConfigError(
                "GATEHOUSE_SECRET_KEY is not set: set it (or GATEHOUSE_SECRET_KEY_FILE) to a "
                "long random value, e.g. `python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        secret_key = development_secret_key(instance_path)
    elif len(secret_key) < 32 and env_name == "production":
        raise ConfigError("GATEHOUSE_SECRET_KEY is shorter than 32 characters: use a longer random value")

    database_url = _env(environ, "DATABASE_URL") or f"sqlite:///{Path(instance_path) / 'gatehouse.db'}"
    port = _int(environ, "PORT", 5000)
    server_url = (_env(environ, "SERVER_URL") or f"http://127.0.0.1:{port}").rstrip("/")
    if not server_url.startswith(("http://", "https://")):
        raise ConfigError(f"GATEHOUSE_SERVER_URL={server_url!r} must start with http:// or https://")

    return {
        "ENV_NAME": env_name,
        "DEVELOPMENT": development,
        "SECRET_KEY": secret_key,
        "DATABASE_URL": database_url,
        "REDIS_URL": _env(environ, "REDIS_URL") or None,
        "SERVER_URL": server_url,
        "PORT": port,
        "DEV_LDAP_PORT": _int(environ, "DEV_LDAP_PORT", 3389),
        "DEV_SMTP_PORT": _int(environ, "DEV_SMTP_PORT", 2525),
        "MAIL_WORKER_THREAD": development,
        "SESSION_COOKIE_SECURE": env_name == "production",
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": None,
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
    }
