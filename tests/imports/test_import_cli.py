"""`flask --app wsgi mailprefs import FILE [--dry-run] [--send-confirmations]`."""

from __future__ import annotations

from sqlalchemy import func, select

from mailprefs.domain.models import Subscriber
from mailprefs.domain.outbox_models import Campaign, CampaignKind
from tests.imports.support import everything, store

CSV = (
    "email,topics,consent_at,source\n"
    "ann@example.com,offers;newsletter,2025-01-02T10:00:00Z,web_form\n"
    "bad-address,offers,2025-01-02T10:00:00Z,web_form\n"
)


def test_the_command_imports_a_file_and_prints_the_counts(runner, db, tmp_path):
    """Exit 0, the counts on stdout, each rejected row on stderr; no confirmation mail."""
    result = runner.invoke(args=["mailprefs", "import", store(tmp_path, CSV)])
    assert result.exit_code == 0, result.output
    assert (
        "done;" in result.stdout and "created 1" in result.stdout and "invalid 1" in result.stdout
    )
    assert "line 3: email" in result.stderr
    with db.session(read_only=True) as s:
        assert s.scalar(select(func.count(Subscriber.id))) == 1
        assert s.scalar(select(func.count(Campaign.id))) == 0  # never sent on its own


def test_dry_run_writes_nothing(runner, db, tmp_path):
    before = everything(db)
    result = runner.invoke(args=["mailprefs", "import", "--dry-run", store(tmp_path, CSV)])
    assert result.exit_code == 0 and "(dry run)" in result.stdout and "created 1" in result.stdout
    assert everything(db) == before


def test_send_confirmations_queues_one_per_new_pending_topic(runner, db, tmp_path):
    """Only when asked: one confirmation mail for the pending double opt-in topic."""
    result = runner.invoke(
        args=["mailprefs", "import", "--send-confirmations", "--quiet", store(tmp_path, CSV)]
    )
    assert result.exit_code == 0, result.output
    with db.session(read_only=True) as s:
        kinds = s.scalars(select(Campaign.kind)).all()
    assert kinds == [CampaignKind.CONFIRMATION]


def test_a_file_that_cannot_be_imported_fails_naming_the_line(runner, db, tmp_path):
    before = everything(db)
    path = store(tmp_path, b"email\nok@example.com\n\xff@example.com\n")
    result = runner.invoke(args=["mailprefs", "import", path])
    assert result.exit_code == 2
    assert "line 3 is not UTF-8" in result.stderr
    assert everything(db) == before
