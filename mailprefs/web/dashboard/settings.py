"""Settings (read-only, every staff login): what this deployment sends as and through,
from the running configuration, each value beside the environment variable that sets
it. Secrets are never shown: a password or key is only said to be set or not."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import current_app, render_template

from mailprefs.web.dashboard import bp


@dataclass
class Setting:
    label: str
    name: str  # the environment variable
    value: str


def _show(value: Any) -> str:
    if value is None or value == "":
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _secret(value: Any) -> str:
    return "set (not shown)" if value else "not set"


# Only said to be set or not.
SECRETS = frozenset({"MAIL_PASSWORD", "MAILPREFS_DKIM_KEY_FILE"})

# (section, [(label, variable)]); variables another part of the service adds later
# simply show up once the configuration holds them.
SECTIONS: list[tuple[str, list[tuple[str, str]]]] = [
    (
        "Links and organisation",
        [
            ("Base URL of every link in mail", "MAILPREFS_BASE_URL"),
            ("Organisation", "MAILPREFS_ORG_NAME"),
            ("Postal address (in every marketing footer)", "MAILPREFS_POSTAL_ADDRESS"),
            ("Privacy policy", "MAILPREFS_PRIVACY_POLICY_URL"),
            ("Contact address", "MAILPREFS_CONTACT_EMAIL"),
            ("Policy version in force at start", "MAILPREFS_POLICY_VERSION"),
        ],
    ),
    (
        "Sender identities",
        [
            ("Marketing From", "MAILPREFS_MARKETING_FROM"),
            ("Marketing Reply-To", "MAILPREFS_MARKETING_REPLY_TO"),
            ("Administrative From", "MAILPREFS_ADMIN_FROM"),
            ("Administrative Reply-To", "MAILPREFS_ADMIN_REPLY_TO"),
            ("List-Id domain", "MAILPREFS_LIST_ID_DOMAIN"),
            ("Unsubscribe by mail (List-Unsubscribe mailto)", "MAILPREFS_UNSUBSCRIBE_MAILTO"),
            ("DKIM domain", "MAILPREFS_DKIM_DOMAIN"),
            ("DKIM selector", "MAILPREFS_DKIM_SELECTOR"),
            ("DKIM private key", "MAILPREFS_DKIM_KEY_FILE"),
        ],
    ),
    (
        "Delivery",
        [
            ("SMTP server", "MAIL_SERVER"),
            ("SMTP port", "MAIL_PORT"),
            ("STARTTLS", "MAIL_USE_TLS"),
            ("TLS from the start", "MAIL_USE_SSL"),
            ("SMTP user", "MAIL_USERNAME"),
            ("SMTP password", "MAIL_PASSWORD"),
            ("Messages in flight per worker", "MAILPREFS_SMTP_CONNECTIONS"),
            ("Limits per destination domain", "MAILPREFS_DOMAIN_LIMITS"),
        ],
    ),
    (
        "Limits",
        [
            ("Send rate per worker (messages/s, 0 = no limit)", "MAILPREFS_SEND_RATE"),
            ("Outbox batch size", "MAILPREFS_BATCH_SIZE"),
            ("Attempts before a failure is final", "MAILPREFS_MAX_ATTEMPTS"),
            ("First retry after (s)", "MAILPREFS_RETRY_BASE_SECONDS"),
            ("Longest retry wait (s)", "MAILPREFS_RETRY_MAX_SECONDS"),
            ("API rate limit per key", "MAILPREFS_API_RATE_LIMIT"),
            ("Largest request body (bytes)", "MAILPREFS_MAX_BODY_BYTES"),
            ("Policy notice period (days)", "MAILPREFS_POLICY_NOTICE_DAYS"),
            ("Unsubscribe links work for (days)", "MAILPREFS_UNSUBSCRIBE_MAX_AGE_DAYS"),
            ("Confirmation links work for (hours)", "MAILPREFS_CONFIRM_MAX_AGE_HOURS"),
            ("Soft bounces before suppression", "MAILPREFS_SOFT_BOUNCE_LIMIT"),
            ("Wrong passwords before a login locks", "MAILPREFS_LOGIN_MAX_FAILURES"),
            ("Login lock (s)", "MAILPREFS_LOGIN_LOCKOUT_SECONDS"),
        ],
    ),
]


def sections(config: Any) -> list[tuple[str, list[Setting]]]:
    shown = []
    for title, rows in SECTIONS:
        settings = [
            Setting(label, name, (_secret if name in SECRETS else _show)(config.get(name)))
            for label, name in rows
            if name in config
        ]
        shown.append((title, settings))
    return shown


@bp.get("/settings")
def settings():
    config = current_app.config
    return render_template(
        "dashboard/settings.html",
        sections=sections(config),
        capture=config.get("MAILPREFS_CAPTURE_MAIL"),
        capture_dir=config.get("MAILPREFS_MAIL_CAPTURE_DIR"),
    )
