"""Settings from GATEHOUSE_* variables: secrets, files, development keys, clear errors."""

import pytest

from config import ConfigError, load_settings


def test_production_refuses_to_start_without_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="GATEHOUSE_SECRET_KEY is not set"):
        load_settings(tmp_path, {})


def test_production_refuses_a_short_secret_key(tmp_path):
    with pytest.raises(ConfigError, match="shorter than 32"):
        load_settings(tmp_path, {"GATEHOUSE_SECRET_KEY": "short"})


def test_development_generates_the_secret_key_once(tmp_path):
    first = load_settings(tmp_path, {"GATEHOUSE_ENV": "development"})["SECRET_KEY"]
    second = load_settings(tmp_path, {"GATEHOUSE_ENV": "development"})["SECRET_KEY"]
    assert first == second and len(first) >= 48
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_secret_read_from_file(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("k" * 40 + "\n")
    settings = load_settings(tmp_path, {"GATEHOUSE_SECRET_KEY_FILE": str(secret)})
    assert settings["SECRET_KEY"] == "k" * 40


def test_unreadable_secret_file_names_the_variable_and_path(tmp_path):
    with pytest.raises(ConfigError, match=r"GATEHOUSE_SECRET_KEY_FILE names '/nonexistent/key', which cannot be read"):
        load_settings(tmp_path, {"GATEHOUSE_SECRET_KEY_FILE": "/nonexistent/key"})


def test_value_and_file_together_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="keep only one"):
        load_settings(tmp_path, {"GATEHOUSE_SECRET_KEY": "x" * 40, "GATEHOUSE_SECRET_KEY_FILE": "/x"})


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"GATEHOUSE_ENV": "staging"}, "is not one of development, production, testing"),
        ({"GATEHOUSE_ENV": "development", "GATEHOUSE_PORT": "http"}, "GATEHOUSE_PORT='http' is not a whole number"),
        ({"GATEHOUSE_ENV": "development", "GATEHOUSE_PORT": "70000"}, "must be between 1 and 65535"),
        ({"GATEHOUSE_ENV": "development", "GATEHOUSE_SERVER_URL": "gatehouse.example"}, "must start with http"),
        ({"GATEHOUSE_ENV": "development", "GATEHOUSE_PORT_FILE": "/x"}, "GATEHOUSE_PORT_FILE is not supported"),
    ],
)
def test_bad_values_are_explained(tmp_path, environ, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(tmp_path, environ)


def test_defaults_are_safe(tmp_path):
    settings = load_settings(tmp_path, {"GATEHOUSE_SECRET_KEY": "s" * 40})
    assert settings["ENV_NAME"] == "production"
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert settings["DEVELOPMENT"] is False
    assert settings["DATABASE_URL"] == f"sqlite:///{tmp_path / 'gatehouse.db'}"
