"""The composer: a draft written, edited, previewed, tested, scheduled or sent now and
duplicated from the dashboard, through the domain (audited as the API's are); bad input
shown beside its field with nothing stored; a marketing login kept to marketing topics
and to the campaign pages."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from mailprefs import clock
from mailprefs.delivery.transport import captured_files
from mailprefs.delivery.worker import Worker
from mailprefs.domain import users
from mailprefs.domain.models import AuditEntry
from mailprefs.domain.outbox_models import Campaign, CampaignKind
from tests.conftest import count
from tests.dashboard.conftest import csrf_token, login
from tests.dashboard.helpers import campaign
from tests.support.factories import person

MARKETING = ("marketing@example.com", "marketing-password-1")


def draft_form(**change) -> dict:
    return {
        "topic": "offers",
        "subject": "Hello {{ first_name }}",
        "text": "Dear {{ first_name }}, our offers.",
        "html": "<p>Dear <b>{{ first_name }}</b></p>",
        "audience": "plan = pro",
        **change,
    }


def write(client, **change):
    token = csrf_token(client, "/dashboard/campaigns/new")
    return client.post(
        "/dashboard/campaigns/new", data={"csrf_token": token, **draft_form(**change)}
    )


def new_id(reply) -> str:
    assert reply.status_code == 302, reply.get_data(as_text=True)
    return reply.location.rstrip("/").split("/")[-1]


def post(client, path: str, data: dict, token_page: str, prefix: str = ""):
    token = csrf_token(client, token_page)
    return client.post(path, data={f"{prefix}csrf_token": token, **data})


def status_of(db, public_id: str) -> str:
    with db.session(read_only=True) as s:
        return s.scalar(select(Campaign.status).where(Campaign.public_id == public_id)).value


@pytest.fixture
def marketing_client(app, db):
    with db.transaction() as s:
        users.create(s, *MARKETING[:1], "marketing", MARKETING[1])
    client = app.test_client()
    assert login(client, *MARKETING).status_code == 302
    return client


def test_a_draft_written_in_the_form_is_stored_audited_and_previewed(ops_client, db, staff):
    """Promise: the form creates a draft (never sent), audited `campaign.create` under
    the user; its page previews it for a sample recipient and counts its audience."""
    with db.transaction() as s:
        person(s, "pro@example.com", opted_in=("offers",), attributes={"plan": "pro"})
        person(s, "free@example.com", opted_in=("offers",), attributes={"plan": "free"})
    public_id = new_id(write(ops_client))
    assert status_of(db, public_id) == "draft"
    with db.session(read_only=True) as s:
        row = s.scalar(select(Campaign).where(Campaign.public_id == public_id))
        assert row.audience == {"attributes": {"plan": "pro"}} and row.send_at is None
        entry = s.scalar(select(AuditEntry).where(AuditEntry.action == "campaign.create"))
        assert entry.actor == f"user:{staff['ops']}" and entry.target_id == public_id
    page = ops_client.get(f"/dashboard/campaigns/{public_id}").get_data(as_text=True)
    assert '<dd data-preview="subject">Hello [first_name]</dd>' in page
    assert "Dear [first_name], our offers." in page
    assert "It would reach <strong>1</strong> of the 1 people" in page
    html = ops_client.get(f"/dashboard/campaigns/{public_id}/preview.html")
    assert html.status_code == 200 and "<b>[first_name]</b>" in html.get_data(as_text=True)
    assert html.headers["Content-Security-Policy"].startswith("default-src 'none'")


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"subject": ""}, "subject", "This field is required"),
        ({"text": "{% for x in %}"}, "text", "line 1"),
        ({"html": "{{ ''.__class__ }}"}, "html", "not allowed"),
        ({"audience": "plan pro"}, "audience", "line 1: write name = value"),
        ({"topic": "no-such-topic"}, "topic", "Not a valid choice"),
    ],
)
def test_bad_input_is_shown_beside_its_field_and_creates_nothing(
    ops_client, db, change, field, message
):
    """Promise: invalid content, audience or topic is refused (422) beside the field
    concerned, the other values are kept in the form, and no campaign is created."""
    reply = write(ops_client, **change)
    assert reply.status_code == 422
    page = reply.get_data(as_text=True)
    error = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', page, re.S)
    assert error and message in error.group(1), page
    assert "Not saved: see the marked fields." in page
    assert count(db, Campaign.id) == 0


def test_a_draft_is_edited_and_a_scheduled_campaign_is_not(ops_client, db):
    """Promise: a draft's content and audience change through the form (audited
    `campaign.update`); a campaign that is no longer a draft cannot be edited."""
    public_id = new_id(write(ops_client))
    edit = f"/dashboard/campaigns/{public_id}/edit"
    form = ops_client.get(edit).get_data(as_text=True)
    assert "plan = pro" in form and "Hello {{ first_name }}" in form
    reply = post(ops_client, edit, draft_form(subject="Changed", audience=""), edit)
    assert reply.status_code == 302
    with db.session(read_only=True) as s:
        row = s.scalar(select(Campaign).where(Campaign.public_id == public_id))
        assert row.subject == "Changed" and row.audience is None
        assert s.scalar(select(AuditEntry.action).where(AuditEntry.action == "campaign.update"))
    scheduled = campaign(db)  # scheduled in an hour
    reply = ops_client.get(f"/dashboard/campaigns/{scheduled}/edit", follow_redirects=True)
    assert "Only a draft can be edited" in reply.get_data(as_text=True)


def test_a_test_copy_goes_to_staff_only(app, ops_client, db):
    """Promise: a test copy is queued (no mail in the request) and the worker sends it to a
    staff address, marked; a public address is refused and nothing is sent to it."""
    public_id = new_id(write(ops_client))
    page = f"/dashboard/campaigns/{public_id}"
    reply = post(
        ops_client, f"{page}/test", {"test-emails": "ops@example.com"}, page, prefix="test-"
    )
    assert reply.status_code == 302
    assert captured_files(app.config["MAILPREFS_MAIL_CAPTURE_DIR"]) == []
    Worker(app).run_due()
    files = captured_files(app.config["MAILPREFS_MAIL_CAPTURE_DIR"])
    assert len(files) == 1 and "ops@example.com" in files[0].read_text()
    refused = post(
        ops_client, f"{page}/test", {"test-emails": "someone@public.example"}, page, "test-"
    )
    shown = ops_client.get(refused.location).get_data(as_text=True)
    assert "test copies go to staff addresses only" in shown
    Worker(app).run_due()
    assert len(captured_files(app.config["MAILPREFS_MAIL_CAPTURE_DIR"])) == 1


def test_schedule_later_or_send_now_and_a_past_time_is_refused(app, ops_client, db):
    """Promise: Schedule sets the time given (UTC); a time in the past is refused in
    words; Send now starts it, and a worker sends it."""
    with db.transaction() as s:
        person(s, "pro@example.com", opted_in=("offers",), attributes={"plan": "pro"})
    public_id = new_id(write(ops_client))
    page = f"/dashboard/campaigns/{public_id}"
    past = post(
        ops_client,
        f"{page}/schedule",
        {"schedule-send_at": "2000-01-01T10:00", "when": "later"},
        page,
        "schedule-",
    )
    assert "must not be in the past" in ops_client.get(past.location).get_data(as_text=True)
    assert status_of(db, public_id) == "draft"
    later = (clock.now().replace(microsecond=0, second=0)).replace(year=clock.now().year + 1)
    post(
        ops_client,
        f"{page}/schedule",
        {"schedule-send_at": later.strftime("%Y-%m-%dT%H:%M"), "when": "later"},
        page,
        "schedule-",
    )
    with db.session(read_only=True) as s:
        row = s.scalar(select(Campaign).where(Campaign.public_id == public_id))
        assert row.status.value == "scheduled" and row.send_at.replace(tzinfo=None) == (
            later.replace(tzinfo=None)
        )
    second = new_id(write(ops_client, subject="Now"))
    post(
        ops_client,
        f"/dashboard/campaigns/{second}/schedule",
        {"when": "now"},
        f"/dashboard/campaigns/{second}",
        "schedule-",
    )
    assert status_of(db, second) == "scheduled"
    Worker(app).run_due()
    assert status_of(db, second) == "sent"


def test_duplicate_makes_a_new_draft_of_any_campaign(app, ops_client, db):
    """Promise: Duplicate copies topic, content and audience into a new draft (audited
    with the original's id) and opens it in the editor; the original is unchanged."""
    original = campaign(db, in_minutes=None)
    reply = post(
        ops_client,
        f"/dashboard/campaigns/{original}/duplicate",
        {},
        f"/dashboard/campaigns/{original}",
    )
    assert reply.status_code == 302 and reply.location.endswith("/edit")
    copy_id = reply.location.split("/")[-2]
    assert copy_id != original and status_of(db, copy_id) == "draft"
    with db.session(read_only=True) as s:
        rows = {c.public_id: c for c in s.scalars(select(Campaign))}
        assert rows[copy_id].subject == rows[original].subject
        assert rows[copy_id].text_body == rows[original].text_body
        entry = s.scalar(
            select(AuditEntry).where(
                AuditEntry.action == "campaign.create", AuditEntry.target_id == copy_id
            )
        )
        assert entry.detail["duplicate_of"] == original


def test_a_marketing_login_composes_on_marketing_topics_only(marketing_client, db):
    """Promise: a marketing login is offered marketing topics only, and posting an
    administrative one is refused with nothing created."""
    form = marketing_client.get("/dashboard/campaigns/new").get_data(as_text=True)
    assert 'value="offers"' in form and 'value="account"' not in form
    refused = write(marketing_client, topic="account")
    assert refused.status_code == 422 and "Not a valid choice" in refused.get_data(as_text=True)
    assert count(db, Campaign.id) == 0
    assert write(marketing_client).status_code == 302


def test_a_marketing_login_sees_campaign_pages_only(marketing_client, db):
    """Promise: pages with personal data or service controls answer 403 to a marketing
    login and are not in its navigation; it cannot act on an administrative campaign."""
    page = marketing_client.get("/dashboard/campaigns").get_data(as_text=True)
    assert ">Campaigns</a>" in page and ">Suppressions</a>" not in page
    for path in (
        "/dashboard/suppressions",
        "/dashboard/audit",
        "/dashboard/complaints",
        "/dashboard/mail",
        "/dashboard/jobs",
        "/dashboard/policies",
        "/dashboard/access",
    ):
        assert marketing_client.get(path).status_code == 403, path
    notice = campaign(db, subject="Your account", topic="account", kind=CampaignKind.CAMPAIGN)
    shown = marketing_client.get(f"/dashboard/campaigns/{notice}").get_data(as_text=True)
    assert ">Pause</button>" not in shown and "Duplicate" not in shown
    paused = post(
        marketing_client,
        f"/dashboard/campaigns/{notice}/pause",
        {},
        f"/dashboard/campaigns/{notice}",
    )
    assert paused.status_code == 403 and status_of(db, notice) == "scheduled"
    with db.session(read_only=True) as s:
        assert (
            s.scalar(select(func.count(AuditEntry.id)).where(AuditEntry.action == "campaign.pause"))
            == 0
        )
