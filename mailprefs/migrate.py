"""Alembic, driven from the app's configuration, plus the reference data it implies."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import select
from sqlalchemy.orm import Session

import mailprefs.domain.account_models  # noqa: F401  (registers its tables)
from mailprefs import clock
from mailprefs.config import MIGRATIONS_DIR
from mailprefs.db import Database
from mailprefs.domain import import_models  # noqa: F401  (registers the tables)
from mailprefs.domain.outbox_models import PolicyKind, PolicyVersion
from mailprefs.domain.topics import sync_topics


def alembic_config(database: Database) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database.url.replace("%", "%%"))
    cfg.attributes["engine"] = database.engine
    return cfg


def upgrade(database: Database, revision: str = "head") -> None:
    command.upgrade(alembic_config(database), revision)


def sync_reference_data(session: Session, config: dict[str, Any]) -> list[str]:
    """Topics from configuration, and the policy in force when none was ever recorded."""
    changed = sync_topics(session, config["MAILPREFS_TOPIC_CATALOGUE"])
    if session.scalar(select(PolicyVersion.id).limit(1)) is None:
        version = config["MAILPREFS_POLICY_VERSION"]
        try:
            effective = datetime.combine(date.fromisoformat(version), datetime.min.time(), UTC)
        except ValueError:
            effective = clock.now()
        session.add(
            PolicyVersion(
                version=version,
                title="Privacy Policy",
                summary="The privacy policy in force when mailprefs was installed.",
                url=config["MAILPREFS_PRIVACY_POLICY_URL"],
                kind=PolicyKind.CHANGE,
                effective_at=effective,
                announce_at=effective,
                created_at=clock.now(),
                created_by="migrate",
            )
        )
        changed.append(f"policy {version}")
    session.flush()
    return changed
