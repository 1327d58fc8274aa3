"""Complaints (queue, consent history beside each, an audited read, resolution), the
searchable audit log, and captured mail (list, viewer, sandboxed HTML, no traversal)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import audit, complaints
from mailprefs.domain.models import AuditEntry
from mailprefs.domain.outbox_models import Complaint, ComplaintStatus
from tests.dashboard.conftest import post_form
from tests.dashboard.helpers import campaign
from tests.support.factories import evidence, person


def complaint_of(db, address="pat@example.com", source="preference_page") -> tuple[str, str]:
    with db.transaction() as s:
        who = person(s, address, opted_in=("offers",))
        row = complaints.report(
            s,
            subscriber=who,
            email_hash=None,
            source=source,
            evidence=evidence(source if source == "preference_page" else "complaint"),
            detail="I never signed up",
        )
        return row.public_id, who.public_id


def test_the_queue_lists_open_complaints_without_addresses(ops_client, db):
    """Promise: open complaints are listed (oldest first); the list shows no address."""
    first, _ = complaint_of(db, "one@example.com")
    second, _ = complaint_of(db, "two@example.com", source="arf")
    page = ops_client.get("/dashboard/complaints").get_data(as_text=True)
    assert page.index(first) < page.index(second)
    assert "spam report" in page and "the preference page" in page
    assert "one@example.com" not in page


def test_opening_a_complaint_shows_consent_history_and_is_an_audited_read(ops_client, db, staff):
    """Promise: the person's consent history is shown beside the complaint, and that
    staff read of personal data is in the audit log (by id, never the address)."""
    public_id, person_id = complaint_of(db)
    page = ops_client.get(f"/dashboard/complaints/{public_id}").get_data(as_text=True)
    assert "pat@example.com" in page and "Consent history" in page
    # In words, not codes: what happened and through what.
    assert "opted in" in page and "opted out" in page and "a complaint" in page
    assert "opt_in" not in page and "opt_out" not in page
    # The administrative topic: an active person receives it (never "account: none").
    assert "receives it (administrative mail" in page
    assert "I never signed up" in page
    with db.session(read_only=True) as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "subscriber.read"))
        assert entry.actor == f"user:{staff['ops']}"
        assert entry.target_id == person_id
        assert entry.detail == {"via": "complaint", "complaint": public_id}
        assert "pat@" not in repr(entry.detail)


def test_resolving_needs_a_resolution_and_leaves_the_open_queue(ops_client, db, staff):
    """Promise: a complaint is resolved with a written resolution (audited)."""
    public_id, _ = complaint_of(db)
    path = f"/dashboard/complaints/{public_id}"
    empty = post_form(
        ops_client, f"{path}/resolve", {"resolution": ""}, token_from=path, follow_redirects=True
    )
    assert "Write how" in empty.get_data(as_text=True)
    post_form(
        ops_client,
        f"{path}/resolve",
        {"resolution": "Signed up in 2019 via the web form; explained, kept suppressed."},
        token_from=path,
    )
    with db.session(read_only=True) as s:
        row = s.scalar(select(Complaint).where(Complaint.public_id == public_id))
        assert row.status == ComplaintStatus.RESOLVED
        assert row.resolved_by == f"user:{staff['ops']}"
        assert "complaint.resolve" in s.scalars(select(AuditEntry.action)).all()
    assert public_id not in ops_client.get("/dashboard/complaints").get_data(as_text=True)
    assert public_id in ops_client.get("/dashboard/complaints?status=resolved").get_data(
        as_text=True
    )


# --- audit log ---------------------------------------------------------------------------


def seed_audit(db):
    base = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    with db.transaction() as s:
        for i in range(60):
            clock.freeze(base + timedelta(hours=i))
            audit.record(
                s,
                f"user:{1 + i % 2}",
                "campaign.pause",
                target_type="campaign",
                target_id=f"c{i % 3}",
            )
        clock.freeze(base + timedelta(days=5))
        audit.record(s, "key:mp_1", "subscriber.read", target_type="subscriber", target_id="p1")
        audit.record(s, "cli", "campaign_x", target_id="c0")  # `_` is no wildcard
    clock.unfreeze()


def test_audit_search_filters_by_actor_action_prefix_target_and_dates(db):
    """Promise: the domain search: exact actor and target, action prefix, date range."""
    seed_audit(db)
    with db.session(read_only=True) as s:
        rows, total = audit.search(s, actor="user:1")
        assert total == 30 and all(r.actor == "user:1" for r in rows)
        _, total = audit.search(s, action="campaign.")
        assert total == 60
        _, total = audit.search(s, action="campaign_")
        assert total == 1
        _, total = audit.search(s, target="c0", action="campaign.")
        assert total == 20
        since = datetime(2026, 11, 2, tzinfo=UTC)
        until = datetime(2026, 11, 3, tzinfo=UTC)
        rows, total = audit.search(s, since=since, until=until)
        assert total == 24 and all(since <= r.at < until for r in rows)
        rows, total = audit.search(s, limit=10, offset=0)
        assert len(rows) == 10 and total == 62 and rows[0].at >= rows[-1].at


def test_the_audit_page_searches_and_pages(ops_client, db):
    """Promise: the dashboard's audit log is searchable and paginated (50 a page)."""
    seed_audit(db)
    page = ops_client.get("/dashboard/audit?action=campaign.&actor=user:2").get_data(as_text=True)
    assert "30 entries" in page and "user:1" not in page.split("<tbody>")[1]
    first = ops_client.get("/dashboard/audit").get_data(as_text=True)
    assert "Page 1 of 2" in first  # 62 entries plus the login
    dated = ops_client.get("/dashboard/audit?since=2026-11-06&until=2026-11-06").get_data(
        as_text=True
    )
    assert "2 entries" in dated
    bad = ops_client.get("/dashboard/audit?since=yesterday&page=x")
    assert bad.status_code == 200


# --- captured mail -----------------------------------------------------------------------


@pytest.fixture
def captured(app, db):
    """Two campaigns sent to one person: two captured .eml files."""
    with db.transaction() as s:
        person(s, "reader@example.com", opted_in=("offers",), attributes={"first_name": "Ann"})
    for subject in ("First mail", "Second mail"):
        campaign(db, subject=subject, in_minutes=None)
    from mailprefs.domain import campaigns as rules
    from mailprefs.domain.outbox_models import Campaign

    with db.transaction() as s:
        for row in s.scalars(select(Campaign).order_by(Campaign.id)):
            rules.schedule(s, row, clock.now(), "test")
            s.flush()
    Worker(app).run_due()
    from mailprefs.delivery.transport import captured_files

    files = captured_files(app.config["MAILPREFS_MAIL_CAPTURE_DIR"])
    assert len(files) == 2
    return files


def test_captured_mail_is_listed_newest_first_and_the_read_is_audited(ops_client, captured, db):
    """Promise: the list shows captured messages newest first; it shows addresses, so
    viewing it is an audited staff read."""
    page = ops_client.get("/dashboard/mail").get_data(as_text=True)
    names = [p.name for p in captured]
    assert page.index(names[1]) < page.index(names[0])
    assert "reader@example.com" in page
    with db.session(read_only=True) as s:
        assert "captured_mail.list" in s.scalars(select(AuditEntry.action)).all()


def test_the_viewer_shows_headers_text_and_html_in_a_sandboxed_frame(ops_client, captured, db):
    """Promise: headers and text shown; HTML only in an <iframe sandbox=""> whose source
    answers with a CSP that allows no script and no request, and nosniff."""
    name = captured[0].name
    page = ops_client.get(f"/dashboard/mail/{name}").get_data(as_text=True)
    assert "List-Unsubscribe" in page and "Hello Ann" in page
    assert f'<iframe class="mail-html" sandbox="" src="/dashboard/mail/{name}/html"' in page
    html = ops_client.get(f"/dashboard/mail/{name}/html")
    assert html.status_code == 200 and html.mimetype == "text/html"
    assert html.headers["Content-Security-Policy"].startswith(
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    )
    assert html.headers["X-Content-Type-Options"] == "nosniff"
    assert "Hello Ann" in html.get_data(as_text=True)
    with db.session(read_only=True) as s:
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "captured_mail.read"))
        assert entry.detail == {"file": name}


@pytest.mark.parametrize(
    "name",
    [
        "..%2F..%2Fetc%2Fpasswd",
        "../secret.eml",
        "%2e%2e%2fsecret.eml",
        "secret.eml",
        ".hidden.eml",
        "nothing-here.eml",
    ],
)
def test_the_viewer_never_leaves_the_capture_folder(app, ops_client, captured, name):
    """Promise: only names in the listing are served: no path traversal, no other file."""
    folder = captured[0].parent
    (folder.parent / "secret.eml").write_text("Subject: outside-subject\n\nOUTSIDE-BODY")
    (folder / ".hidden.eml").write_text("Subject: dotfile-subject\n\nDOTFILE-BODY")
    for suffix in ("", "/html"):
        reply = ops_client.get(f"/dashboard/mail/{name}{suffix}")
        assert reply.status_code == 404
        # Neither file's content is served (the 404 page is the staff layout, whose
        # own markup says "hidden": the markers are the files' own words).
        for marker in (b"outside-subject", b"OUTSIDE-BODY", b"dotfile-subject", b"DOTFILE-BODY"):
            assert marker not in reply.data


def test_without_capture_there_is_no_mail_page(app, ops_client):
    """Promise: where mail really leaves (MAIL_SERVER set), no captured-mail page or link."""
    app.config["MAILPREFS_CAPTURE_MAIL"] = False
    assert ops_client.get("/dashboard/mail").status_code == 404
    assert "Captured mail" not in ops_client.get("/dashboard/campaigns").get_data(as_text=True)


def test_navigation_keeps_slots_for_jobs_and_policies(ops_client):
    """Promise: Jobs and Policies are in the navigation (linked once those pages exist)."""
    page = ops_client.get("/dashboard/campaigns").get_data(as_text=True)
    nav = page.split('<nav aria-label="Dashboard">')[1].split("</nav>")[0]
    for label in ("Campaigns", "Jobs", "Policies", "Suppressions", "Complaints", "Audit log"):
        assert label in nav
