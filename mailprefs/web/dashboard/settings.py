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


# (section, [(label, variable, secret?)]); variables another part of the service adds
# later simply show up once the configuration holds them.
SECTIONS: list[tuple[str, list[tuple[str, str, bool]]]] = [
    (
        "Links and organisation",
        [
            ("Base URL of every link in mail", "MAILPREFS_BASE_URL", False),
            ("Organisation", "MAILPREFS_ORG_NAME", False),
            ("Postal address (in every marketing footer)", "MAILPREFS_POSTAL_ADDRESS", False),
            ("Privacy policy", "MAILPREFS_PRIVACY_POLICY_URL", False),
            ("Contact address", "MAILPREFS_CONTACT_EMAIL", False),
            ("Policy version in force at start", "MAILPREFS_POLICY_VERSION", False),
        ],
    ),
    (
        "Sender identities",
        [
            ("Marketing From", "MAILPREFS_MARKETING_FROM", False),
            ("Marketing Reply-To", "MAILPREFS_MARKETING_REPLY_TO", False),
            ("Administrative From", "MAILPREFS_ADMIN_FROM", False),
            ("Administrative Reply-To", "MAILPREFS_ADMIN_REPLY_TO", False),
            ("List-Id domain", "MAILPREFS_LIST_ID_DOMAIN", False),
            (
                "Unsubscribe by mail (List-Unsubscribe mailto)",
                "MAILPREFS_UNSUBSCRIBE_MAILTO",
                False,
            ),
            ("DKIM domain", "MAILPREFS_DKIM_DOMAIN", False),
            ("DKIM selector", "MAILPREFS_DKIM_SELECTOR", False),
            ("DKIM private key", "MAILPREFS_DKIM_KEY_FILE", True),
        ],
    ),
    (
        "Delivery",
        [
            ("SMTP server", "MAIL_SERVER", False),
            ("SMTP port", "MAIL_PORT", False),
            ("STARTTLS", "MAIL_USE_TLS", False),
            ("TLS from the start", "MAIL_USE_SSL", False),
            ("SMTP user", "MAIL_USERNAME", False),
            ("SMTP password", "MAIL_PASSWORD", True),
            ("Messages in flight per worker", "MAILPREFS_SMTP_CONNECTIONS", False),
            ("Limits per destination domain", "MAILPREFS_DOMAIN_LIMITS", False),
        ],
    ),
    (
        "Limits",
        [
            ("Send rate per worker (messages/s, 0 = no limit)", "MAILPREFS_SEND_RATE", False),
            ("Outbox batch size", "MAILPREFS_BATCH_SIZE", False),
            ("Attempts before a failure is final", "MAILPREFS_MAX_ATTEMPTS", False),
            ("First retry after (s)", "MAILPREFS_RETRY_BASE_SECONDS", False),
            ("Longest retry wait (s)", "MAILPREFS_RETRY_MAX_SECONDS", False),
            ("API rate limit per key", "MAILPREFS_API_RATE_LIMIT", False),
            ("Largest request body (bytes)", "MAILPREFS_MAX_BODY_BYTES", False),
            ("Policy notice period (days)", "MAILPREFS_POLICY_NOTICE_DAYS", False),
            ("Unsubscribe links work for (days)", "MAILPREFS_UNSUBSCRIBE_MAX_AGE_DAYS", False),
            ("Confirmation links work for (hours)", "MAILPREFS_CONFIRM_MAX_AGE_HOURS", False),
            ("Soft bounces before suppression", "MAILPREFS_SOFT_BOUNCE_LIMIT", False),
            ("Wrong passwords before a login locks", "MAILPREFS_LOGIN_MAX_FAILURES", False),
            ("Login lock (s)", "MAILPREFS_LOGIN_LOCKOUT_SECONDS", False),
        ],
    ),
]


def sections(config: Any) -> list[tuple[str, list[Setting]]]:
    shown = []
    for title, rows in SECTIONS:
        settings = [
            Setting(label, name, _secret(config.get(name)) if secret else _show(config.get(name)))
            for label, name, secret in rows
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
