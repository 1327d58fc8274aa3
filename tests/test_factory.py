"""The app factory and configuration: safe defaults, clear refusals."""

from __future__ import annotations

import pytest

from mailprefs import config, create_app
from mailprefs.config import ConfigError


def test_production_refuses_to_start_without_a_secret_key(tmp_path, monkeypatch):
    """Outside development, starting with no (built-in) key is refused with a message."""
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        create_app({"MAILPREFS_ENV": "production", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})


@pytest.mark.parametrize("weak", ["dev", "changeme", "short"])
def test_production_refuses_weak_keys(tmp_path, weak):
    with pytest.raises(ConfigError, match="short or well-known"):
        create_app(
            {
                "MAILPREFS_ENV": "production",
                "SECRET_KEY": weak,
                "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
            }
        )


def test_development_generates_and_keeps_a_random_key(tmp_path):
    """Development without SECRET_KEY uses a random key kept in the instance folder."""
    first = config.finalise(config.load({"MAILPREFS_ENV": "development"}), tmp_path)
    second = config.finalise(config.load({"MAILPREFS_ENV": "development"}), tmp_path)
    assert first["SECRET_KEY"] == second["SECRET_KEY"]
    assert len(first["SECRET_KEY"]) >= 32
    assert (tmp_path / "dev-secret-key").stat().st_mode & 0o077 == 0


def test_secret_key_list_first_signs_all_verify(tmp_path):
    settings = config.finalise(
        config.load({"MAILPREFS_ENV": "production", "SECRET_KEY": "a" * 20 + ", " + "b" * 20}),
        tmp_path,
    )
    assert settings["SECRET_KEYS"] == ["a" * 20, "b" * 20]
    assert settings["SECRET_KEY"] == "a" * 20


def test_postgres_scheme_is_accepted_as_given(tmp_path):
    settings = config.finalise(
        config.load({"MAILPREFS_ENV": "testing", "DATABASE_URL": "postgres://u:p@h/db"}), tmp_path
    )
    assert settings["DATABASE_URL"] == "postgresql://u:p@h/db"


def test_default_database_is_sqlite_under_instance(tmp_path):
    settings = config.finalise(config.load({"MAILPREFS_ENV": "testing"}), tmp_path)
    assert settings["DATABASE_URL"] == f"sqlite:///{tmp_path / 'mailprefs.db'}"


def test_mail_is_captured_when_mail_server_is_unset(tmp_path):
    captured = config.finalise(config.load({"MAILPREFS_ENV": "testing"}), tmp_path)
    relayed = config.finalise(
        config.load({"MAILPREFS_ENV": "testing", "MAIL_SERVER": "smtp.example.com"}), tmp_path
    )
    assert captured["MAILPREFS_CAPTURE_MAIL"] is True
    assert captured["MAILPREFS_MAIL_CAPTURE_DIR"] == str(tmp_path / "mail")
    assert relayed["MAILPREFS_CAPTURE_MAIL"] is False


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MAIL_PORT", "twenty-five", "MAIL_PORT must be a whole number"),
        ("MAIL_USE_TLS", "maybe", "MAIL_USE_TLS must be true or false"),
        ("MAILPREFS_ENV", "staging", "MAILPREFS_ENV must be one of"),
        ("MAILPREFS_TOPICS", "[{", "MAILPREFS_TOPICS is not valid JSON"),
        (
            "MAILPREFS_TOPICS",
            '[{"slug":"x","name":"X","kind":"marketing"}]',
            "administrative topic 'account' is required",
        ),
    ],
)
def test_bad_settings_stop_start_up_naming_the_variable(tmp_path, name, value, message):
    with pytest.raises(ConfigError, match=message):
        config.finalise(config.load({"MAILPREFS_ENV": "testing", name: value}), tmp_path)


def test_default_catalogue_has_both_streams_and_a_double_opt_in_topic():
    topics = config.DEFAULT_TOPICS
    admin = {t["slug"] for t in topics if t["kind"] == "administrative"}
    marketing = [t for t in topics if t["kind"] == "marketing"]
    assert {"account", "policy"} <= admin
    assert len(marketing) >= 2
    assert any(t.get("double_opt_in") for t in marketing)


def test_topics_can_come_from_the_environment(tmp_path):
    catalogue = (
        '[{"slug":"account","name":"A","kind":"administrative"},'
        '{"slug":"policy","name":"P","kind":"administrative"},'
        '{"slug":"deals","name":"Deals","kind":"marketing","double_opt_in":true}]'
    )
    settings = config.finalise(
        config.load({"MAILPREFS_ENV": "testing", "MAILPREFS_TOPICS": catalogue}), tmp_path
    )
    assert [t["slug"] for t in settings["MAILPREFS_TOPIC_CATALOGUE"]] == [
        "account",
        "policy",
        "deals",
    ]


def test_behind_a_trusted_proxy_the_client_address_is_the_forwarded_one(tmp_path):
    """Consent evidence records the person's IP, not the load balancer's."""
    seen = {}

    def build(proxies):
        app = create_app(
            {
                "MAILPREFS_ENV": "testing",
                "SECRET_KEY": "k" * 20,
                "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
                "MAILPREFS_PROXY_COUNT": proxies,
            }
        )

        @app.get("/whoami")
        def whoami():
            seen[proxies] = __import__("flask").request.remote_addr
            return "ok"

        return app

    headers = {"X-Forwarded-For": "198.51.100.23"}
    build(1).test_client().get("/whoami", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    build(0).test_client().get("/whoami", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.5"})
    assert seen == {1: "198.51.100.23", 0: "10.0.0.5"}


def test_the_configuration_guide_documents_every_setting_with_its_default():
    """Promise (issue 2): every environment variable is in the settings table of
    docs/configuration.md, with the default the code uses."""
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    table = guide.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented: dict[str, str] = {}
    for row in rows:
        names_cell, default_cell = row.split(" | ")[:2]
        names = [n.strip("` ") for n in names_cell.strip("| ").split(",")]
        names = [n for part in names for n in part.split(" / ")]
        defaults = [d.strip() for d in default_cell.split(", ")]
        for i, name in enumerate(n.strip("` ") for n in names):
            documented[name] = defaults[i] if len(defaults) == len(names) else default_cell
    missing = [name for name in config._SETTINGS if name not in documented]
    assert missing == []
    for name, (default, _parse) in config._SETTINGS.items():
        if default is not None and name not in ("DATABASE_URL",):
            assert f"`{default}`" in documented[name], (name, default, documented[name])
