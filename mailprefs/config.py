"""Defaults and environment overrides.

Every setting the service reads comes from here, so the settings table of
docs/configuration.md and this module are the same list (a test holds them equal).
Values are parsed once, at start-up, and a bad value stops the process with a message
naming the variable.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_PACKAGE = Path(__file__).resolve().parent


def _data_dir(name: str) -> Path:
    """`templates/` and `migrations/` sit at the top of the checkout (the layout is
    fixed); a wheel ships them inside the package (see setup.py), where no checkout is."""
    shipped = _PACKAGE / name
    return shipped if shipped.is_dir() else ROOT / name


TEMPLATES_DIR = _data_dir("templates")
MIGRATIONS_DIR = _data_dir("migrations")


def default_instance_path() -> Path:
    """`instance/` of the checkout; installed from a wheel (no checkout), the working
    directory's `instance/`, never a folder inside site-packages."""
    return ROOT / "instance" if (ROOT / "setup.cfg").is_file() else Path.cwd() / "instance"


DEFAULT_TOPICS: list[dict[str, Any]] = [
    {
        "slug": "account",
        "name": "Account and transactions",
        "kind": "administrative",
        "description": "Sign-in, security and receipts for things you asked us to do.",
    },
    {
        "slug": "policy",
        "name": "Privacy policy changes",
        "kind": "administrative",
        "description": "Notices of changes to our privacy policy and of any transfer of data.",
    },
    {
        "slug": "newsletter",
        "name": "Newsletter",
        "kind": "marketing",
        "double_opt_in": True,
        "description": "Our monthly newsletter.",
    },
    {
        "slug": "offers",
        "name": "Offers and product news",
        "kind": "marketing",
        "description": "New features, offers and events.",
    },
]


class ConfigError(RuntimeError):
    """The environment holds a value the service cannot start with."""


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _int(name: str, raw: str, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def _bounded_int(name: str, raw: str, minimum: int, maximum: int) -> int:
    value = _int(name, raw, minimum)
    if value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}")
    return value


# MAILPREFS_DOMAIN_LIMITS: its format is a setting's, so it is read here; the worker's
# pacing (mailprefs.delivery.pacing) applies it.
@dataclass(frozen=True)
class DomainLimit:
    domains: tuple[str, ...]
    concurrency: int = 0  # messages in flight at once; 0: no limit
    rate: float = 0.0  # messages a second; 0: no limit

    @property
    def name(self) -> str:
        return self.domains[0]


_PER = {"s": 1.0, "m": 60.0, "h": 3600.0}
_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$")


def parse_domain_limits(text: str | None) -> dict[str, DomainLimit]:
    """`MAILPREFS_DOMAIN_LIMITS` as {domain: its limit}. The format, one entry per
    provider, entries separated by `;`:

        gmail.com,googlemail.com concurrency=8 rate=20/s; outlook.com,hotmail.com rate=300/m

    Domains sharing an entry share one limit. `rate` is N (a second), N/s, N/m or N/h.
    ValueError with a readable message for anything else.
    """
    limits: dict[str, DomainLimit] = {}
    for entry in (text or "").split(";"):
        words = entry.split()
        if not words:
            continue
        domains = tuple(d.strip().lower().rstrip(".") for d in words[0].split(",") if d.strip())
        if not domains or not all(_DOMAIN.match(d) and "." in d for d in domains):
            raise ValueError(f"{words[0]!r} is not a list of domain names")
        values: dict[str, float] = {}
        for word in words[1:]:
            key, sep, raw = word.partition("=")
            if not sep or key not in ("concurrency", "rate") or key in values:
                raise ValueError(f"{word!r}: expected concurrency=N or rate=N[/s|/m|/h] once each")
            values[key] = _limit_value(key, raw)
        if not values:
            raise ValueError(f"{words[0]}: give concurrency=N, rate=N/s or both")
        limit = DomainLimit(
            domains, int(values.get("concurrency", 0)), float(values.get("rate", 0.0))
        )
        for domain in domains:
            if domain in limits:
                raise ValueError(f"{domain} has more than one limit")
            limits[domain] = limit
    return limits


def _limit_value(key: str, raw: str) -> float:
    number, _, per = raw.partition("/")
    try:
        value = float(number) if key == "rate" else int(number)
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not a number") from None
    if key == "concurrency" and per:
        raise ValueError(f"concurrency={raw!r} takes a whole number")
    if per and per not in _PER:
        raise ValueError(f"rate={raw!r}: the unit is /s, /m or /h")
    if value <= 0:
        raise ValueError(f"{key}={raw!r} must be more than 0")
    return value / _PER[per or "s"]


def _domain_limits(name: str, raw: str) -> dict[str, Any]:
    try:
        return parse_domain_limits(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _rate(name: str, raw: str) -> float:
    value = _float(name, raw)
    if value > 1:
        raise ConfigError(f"{name} is a fraction (0.003 is 0.3%), at most 1")
    return value


def _hour(name: str, raw: str) -> int:
    value = _int(name, raw, 0)
    if value > 23:
        raise ConfigError(f"{name} must be an hour of the day, 0 to 23")
    return value


def _log_format(name: str, raw: str) -> str:
    if raw not in ("text", "json"):
        raise ConfigError(f"{name} must be text or json")
    return raw


# name -> (default, parser). None as a default means "unset".
_SETTINGS: dict[str, tuple[Any, Any]] = {
    "MAILPREFS_ENV": ("production", str),
    "MAILPREFS_BASE_URL": ("http://127.0.0.1:5000", str),
    "MAILPREFS_ORG_NAME": ("ICVT Ltd.", str),
    "MAILPREFS_POSTAL_ADDRESS": ("ICVT Ltd., 23 Menachem Begin Rd., Tel Aviv, Israel", str),
    "MAILPREFS_PRIVACY_POLICY_URL": ("https://www.jpegmini.com/main/privacy", str),
    "MAILPREFS_CONTACT_EMAIL": ("support@jpegmini.com", str),
    "MAILPREFS_MARKETING_FROM": ("ICVT News <news@mail.example.com>", str),
    "MAILPREFS_MARKETING_REPLY_TO": (None, str),
    "MAILPREFS_ADMIN_FROM": ("ICVT <account@mail.example.com>", str),
    "MAILPREFS_ADMIN_REPLY_TO": (None, str),
    "MAILPREFS_LIST_ID_DOMAIN": ("mail.example.com", str),
    "MAILPREFS_UNSUBSCRIBE_MAILTO": (None, str),
    "MAILPREFS_TOPICS": (None, str),
    "MAILPREFS_TOPICS_FILE": (None, str),
    "MAILPREFS_HASH_KEY": (None, str),
    "MAILPREFS_POLICY_VERSION": ("2011-07-06", str),
    "MAILPREFS_MAIL_CAPTURE_DIR": (None, str),
    "MAILPREFS_MAX_BODY_BYTES": ("1048576", lambda n, v: _int(n, v, 1024)),
    "MAILPREFS_IMPORT_MAX_BYTES": ("1073741824", lambda n, v: _int(n, v, 1024)),
    "MAILPREFS_IMPORT_DIR": (None, str),
    "MAILPREFS_IMPORT_BATCH_SIZE": ("2000", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_API_RATE_LIMIT": ("600 per minute", str),
    "MAILPREFS_RATELIMIT_STORAGE_URI": ("memory://", str),
    "MAILPREFS_UNSUBSCRIBE_MAX_AGE_DAYS": ("400", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_CONFIRM_MAX_AGE_HOURS": ("48", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_REACTIVATION_INTERVAL_HOURS": ("24", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_BATCH_SIZE": ("200", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_EXPANSION_BATCH_SIZE": ("20000", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_SEND_RATE": ("0", _float),
    "MAILPREFS_LEASE_SECONDS": ("60", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_MAX_ATTEMPTS": ("8", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_RETRY_BASE_SECONDS": ("60", _float),
    "MAILPREFS_RETRY_MAX_SECONDS": ("21600", _float),
    "MAILPREFS_WORKER_IDLE_SECONDS": ("2", _float),
    "MAILPREFS_LOG_FORMAT": ("text", _log_format),
    "MAILPREFS_SQLITE_SYNCHRONOUS": ("NORMAL", str),
    "MAILPREFS_DKIM_DOMAIN": (None, str),
    "MAILPREFS_DKIM_SELECTOR": (None, str),
    "MAILPREFS_DKIM_KEY_FILE": (None, str),
    "MAILPREFS_DKIM_KEYS": (None, str),
    "MAILPREFS_POLICY_NOTICE_DAYS": ("30", lambda n, v: _int(n, v, 0)),
    "MAILPREFS_WEBHOOK_SECRET": (None, str),
    "MAILPREFS_TEST_ADDRESSES": (None, str),
    "MAILPREFS_PROXY_COUNT": ("0", lambda n, v: _int(n, v, 0)),
    "MAILPREFS_SOFT_BOUNCE_LIMIT": ("3", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_SOFT_BOUNCE_DAYS": ("7", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_COMPLAINT_RATE_LIMIT": ("0.003", _rate),
    "MAILPREFS_BOUNCE_RATE_LIMIT": ("0.05", _rate),
    "MAILPREFS_RATE_MIN_SAMPLE": ("1000", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_RATE_WINDOW_DAYS": ("7", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_BOUNCE_DOMAIN": (None, str),
    "MAILPREFS_FEEDBACK_SENDER_ID": ("mailprefs", str),
    "MAILPREFS_BOUNCE_IMAP_URL": (None, str),
    "MAILPREFS_BOUNCE_IMAP_CA_FILE": (None, str),
    "MAILPREFS_BOUNCE_IMAP_ASIDE": ("mailprefs-unprocessed", str),
    "MAILPREFS_BOUNCE_FETCH_MINUTES": ("5", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_WEBHOOK_TIMEOUT_SECONDS": ("10", _float),
    "MAILPREFS_WEBHOOK_RETRY_BASE_SECONDS": ("30", _float),
    "MAILPREFS_WEBHOOK_RETRY_MAX_SECONDS": ("3600", _float),
    "MAILPREFS_SCHEDULER_LEASE_SECONDS": ("15", lambda n, v: _int(n, v, 2)),
    "MAILPREFS_SCHEDULER_TICK_SECONDS": ("5", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_HOUSEKEEPING_MINUTES": ("10", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_COMPACT_HOUR": ("3", _hour),
    "MAILPREFS_LOGIN_MAX_FAILURES": ("5", lambda n, v: _int(n, v, 1)),
    "MAILPREFS_LOGIN_LOCKOUT_SECONDS": ("900", lambda n, v: _int(n, v, 1)),
    "MAIL_SERVER": (None, str),
    "MAIL_PORT": ("25", lambda n, v: _int(n, v, 1)),
    "MAIL_USE_TLS": ("false", _bool),
    "MAIL_USE_SSL": ("false", _bool),
    "MAIL_USERNAME": (None, str),
    "MAIL_PASSWORD": (None, str),
    "MAIL_TIMEOUT": ("30", _float),
    "MAILPREFS_SMTP_PIPELINING": ("true", _bool),
    "MAILPREFS_SMTP_CONNECTIONS": ("16", lambda n, v: _bounded_int(n, v, 1, 256)),
    "MAILPREFS_DOMAIN_LIMITS": (None, lambda n, v: _domain_limits(n, v)),
}

_ENVIRONMENTS = {"development", "production", "testing"}
_WEAK_KEYS = {"dev", "development", "secret", "changeme", "you-will-never-guess", "mailprefs"}


def _parse(name: str, raw: str, parser: Any) -> Any:
    if parser is str:
        return raw
    return parser(name, raw)


def load(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Build the configuration mapping from an environment (default: os.environ)."""
    env = os.environ if environ is None else environ
    config: dict[str, Any] = {}
    for name, (default, parser) in _SETTINGS.items():
        raw = env.get(name)
        if raw is None or raw == "":
            config[name] = None if default is None else _parse(name, default, parser)
        else:
            config[name] = _parse(name, raw, parser)
    config["DATABASE_URL"] = env.get("DATABASE_URL") or None
    config["SECRET_KEY"] = env.get("SECRET_KEY") or None
    return config


def finalise(config: dict[str, Any], instance_path: Path) -> dict[str, Any]:
    """Fill derived values and refuse settings that are unsafe for the environment."""
    environment = config["MAILPREFS_ENV"]
    if environment not in _ENVIRONMENTS:
        raise ConfigError(f"MAILPREFS_ENV must be one of {sorted(_ENVIRONMENTS)}")

    if not config.get("DATABASE_URL"):
        config["DATABASE_URL"] = f"sqlite:///{instance_path / 'mailprefs.db'}"
    config["DATABASE_URL"] = normalise_database_url(config["DATABASE_URL"])

    keys = secret_keys(config.get("SECRET_KEY"))
    if not keys:
        if environment == "production":
            raise ConfigError(
                "SECRET_KEY is not set. Outside development mailprefs refuses to start "
                "with a built-in key: set SECRET_KEY to a long random value (a "
                "comma-separated list rotates keys), or set MAILPREFS_ENV=development "
                "on a developer machine."
            )
        keys = [_development_key(instance_path)]
    elif environment == "production":
        weak = [k for k in keys if k.lower() in _WEAK_KEYS or len(k) < 16]
        if weak:
            raise ConfigError(
                "SECRET_KEY holds a short or well-known key; use at least 16 random characters"
            )
    config["SECRET_KEYS"] = keys
    config["SECRET_KEY"] = keys[0]
    # The suppression hash must survive secret-key rotation, so it has its own key; by
    # default it is derived from the last key of the list (the oldest still trusted).
    if not config.get("MAILPREFS_HASH_KEY"):
        config["MAILPREFS_HASH_KEY"] = "derived:" + keys[-1]

    if not config.get("MAILPREFS_IMPORT_DIR"):
        config["MAILPREFS_IMPORT_DIR"] = str(instance_path / "imports")
    if not config.get("MAILPREFS_MAIL_CAPTURE_DIR"):
        config["MAILPREFS_MAIL_CAPTURE_DIR"] = str(instance_path / "mail")
    config["MAILPREFS_CAPTURE_MAIL"] = not config.get("MAIL_SERVER")
    config["MAILPREFS_TOPIC_CATALOGUE"] = topic_catalogue(config)
    config["MAX_CONTENT_LENGTH"] = config["MAILPREFS_MAX_BODY_BYTES"]
    config["TESTING"] = environment == "testing"
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
    config["SESSION_COOKIE_SECURE"] = config["MAILPREFS_BASE_URL"].startswith("https://")
    config["REMEMBER_COOKIE_SECURE"] = config["SESSION_COOKIE_SECURE"]
    config["REMEMBER_COOKIE_HTTPONLY"] = True
    return config


def secret_keys(raw: str | None) -> list[str]:
    """`SECRET_KEY` as a list: the first signs, all verify."""
    if not raw:
        return []
    return [part.strip() for part in raw.split(",") if part.strip()]


def normalise_database_url(url: str) -> str:
    # Heroku-style `postgres://` URLs are common; SQLAlchemy only knows `postgresql://`.
    if url.startswith("postgres://"):
        return "postgresql://" + url[len("postgres://") :]
    return url


def _development_key(instance_path: Path) -> str:
    """A random key kept in the instance folder, so development links survive restarts."""
    path = instance_path / "dev-secret-key"
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def topic_catalogue(config: dict[str, Any]) -> list[dict[str, Any]]:
    """The topic catalogue: MAILPREFS_TOPICS (JSON), MAILPREFS_TOPICS_FILE, or the default."""
    raw = config.get("MAILPREFS_TOPICS")
    source = "MAILPREFS_TOPICS"
    if not raw and config.get("MAILPREFS_TOPICS_FILE"):
        source = "MAILPREFS_TOPICS_FILE"
        raw = Path(config["MAILPREFS_TOPICS_FILE"]).read_text()
    if not raw:
        return [dict(t) for t in DEFAULT_TOPICS]
    try:
        topics = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc}") from None
    if not isinstance(topics, list) or not topics:
        raise ConfigError(f"{source} must be a non-empty JSON list of topics")
    seen: set[str] = set()
    for topic in topics:
        if not isinstance(topic, dict) or not {"slug", "name", "kind"} <= topic.keys():
            raise ConfigError(f"{source}: every topic needs slug, name and kind")
        if topic["kind"] not in {"administrative", "marketing"}:
            raise ConfigError(f"{source}: topic {topic['slug']!r} has an unknown kind")
        if topic["slug"] in seen:
            raise ConfigError(f"{source}: topic {topic['slug']!r} appears twice")
        seen.add(topic["slug"])
        topic.setdefault("double_opt_in", False)
        topic.setdefault("description", "")
        if topic["kind"] == "administrative" and topic["double_opt_in"]:
            raise ConfigError(
                f"{source}: administrative topic {topic['slug']!r} cannot be double opt-in"
            )
    # Confirmation mail goes out on `account` and policy notices on `policy`.
    kinds = {t["slug"]: t["kind"] for t in topics}
    for required in ("account", "policy"):
        if kinds.get(required) != "administrative":
            raise ConfigError(f"{source}: an administrative topic {required!r} is required")
    return topics
