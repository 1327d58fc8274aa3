"""Policy announcements on the dashboard: a form that previews who a notice reaches
(the gate's counts on the policy topic) before anything is scheduled, then announces it
through `policies.announce` (as the API does); errors beside their fields, nothing kept
on error; announced versions listed with their notice's progress."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import campaigns, consent, policies, subscribers, suppression
from mailprefs.domain.models import AuditEntry, SuppressionReason
from mailprefs.domain.outbox_models import Campaign, CampaignStatus, PolicyKind, PolicyVersion
from mailprefs.domain.topics import get_topic
from tests.dashboard.conftest import csrf_token, post_form
from tests.support.factories import HASH_KEY, evidence, person

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def local(moment: datetime) -> str:
    """A UTC time as a datetime-local input sends it."""
    return moment.strftime("%Y-%m-%dT%H:%M")


def form(**change) -> dict[str, str]:
    return {
        "version": "2026-04",
        "title": "Clearer retention periods",
        "summary": "We now say how long we keep each kind of data.\r\nNothing else changes.",
        "url": "https://example.test/privacy/2026-04",
        "effective_at": local(T0 + timedelta(days=31)),
        "announce_at": "",
        "kind": "change",
        **change,
    }


def preview(client, data: dict):
    return post_form(client, "/dashboard/policies/preview", data, token_from="/dashboard/policies")


def create(client, data: dict, **kw):
    return post_form(client, "/dashboard/policies", data, token_from="/dashboard/policies", **kw)


def mixed_population(db) -> None:
    """Everyone the gate tells apart for administrative mail."""
    with db.transaction() as s:
        person(s, "never-consented@example.com")
        person(s, "marketing@example.com", opted_in=("offers",))
        out = person(s, "opted-out@example.com", opted_in=("offers",))
        consent.opt_out(s, out, get_topic(s, "offers"), evidence("one_click"))
        complained = person(s, "complained@example.com", opted_in=("offers",))
        suppression.add(s, complained.email_hash, SuppressionReason.COMPLAINT, source="arf")
        for i in range(2):
            gone = person(s, f"deactivated{i}@example.com")
            subscribers.deactivate(s, gone, evidence("preference_page"))
        erased = person(s, "erased@example.com")
        subscribers.erase(s, erased, hash_key=HASH_KEY, actor="test")
        child = person(s, "child@example.com")
        subscribers.erase(s, child, hash_key=HASH_KEY, actor="test", reason="underage")
        bounced = person(s, "bounced@example.com")
        suppression.add(s, bounced.email_hash, SuppressionReason.BOUNCE, source="smtp")


def nothing_announced(db) -> bool:
    with db.session(read_only=True) as s:
        versions = s.scalars(select(PolicyVersion.version)).all()
        notices = s.scalar(select(func.count(Campaign.id)))
        announced = s.scalar(
            select(func.count(AuditEntry.id)).where(AuditEntry.action == "policy.announce")
        )
    return versions == ["2011-07-06"] and notices == 0 and announced == 0


def field_error(page: str, field: str) -> str:
    """The error shown beside one field (empty if none)."""
    match = re.search(rf'<p class="field-error" id="{field}-error">(.*?)</p>', page, re.S)
    return html.unescape(match.group(1)) if match else ""


def carried(page: str) -> dict[str, str]:
    """The hidden values the confirm button posts."""
    confirm = re.search(
        r'<form[^>]*action="/dashboard/policies" class="card confirm">.*?</form>', page, re.S
    )
    assert confirm, "no confirm form"
    return {
        name: html.unescape(value)
        for name, value in re.findall(
            r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">', confirm.group(0)
        )
        if name != "csrf_token"
    }


def test_the_preview_shows_the_gates_counts_before_anything_is_scheduled(app, ops_client, db):
    """Promise: the first submit shows who the notice reaches, allowed and blocked by
    reason, exactly as `audience_counts` on the policy topic counts them over a mixed
    population (opted out of marketing, complained, deactivated, erased, under 13,
    bounced), and schedules nothing."""
    clock.freeze(T0)
    mixed_population(db)
    reply = preview(ops_client, form())
    assert reply.status_code == 200
    page = reply.get_data(as_text=True)
    with db.session(read_only=True) as s:
        expected = campaigns.audience_counts(s, get_topic(s, policies.TOPIC), None)
    # Opted out of marketing and complained are told: a notice is administrative mail.
    assert expected["allowed"] == 4
    assert expected["blocked"] == {
        "deactivated": 2,
        "erased": 1,
        "underage": 1,
        "suppressed_bounce": 1,
    }
    assert f'<dd data-count="allowed">{expected["allowed"]}</dd>' in page
    assert f'<dd data-count="blocked">{sum(expected["blocked"].values())}</dd>' in page
    assert f'<dd data-count="total">{expected["total"]}</dd>' in page
    shown = dict(re.findall(r'<td data-blocked="([a-z_]+)">(\d+)</td>', page))
    assert {k: int(v) for k, v in shown.items()} == expected["blocked"]
    assert "Confirm: announce to 4 people" in page
    assert nothing_announced(db), "a preview must not create or audit anything"


def test_confirming_announces_through_the_domain_and_the_version_is_listed(
    app, ops_client, db, staff
):
    """Promise: the confirm button posts the previewed values unchanged; the second
    submit records the version and schedules its notice (as POST /api/v1/policies does),
    audited under the user; the list then shows it with its notice and a progress link."""
    clock.freeze(T0)
    announce_at = T0 + timedelta(hours=2)
    values = form(announce_at=local(announce_at), kind="transfer")
    page = preview(ops_client, values).get_data(as_text=True)
    assert carried(page) == values
    reply = create(ops_client, carried(page))
    assert reply.status_code == 302
    assert reply.headers["Location"] == "/dashboard/policies#policy-2026-04"
    with db.session(read_only=True) as s:
        policy = s.scalar(select(PolicyVersion).where(PolicyVersion.version == "2026-04"))
        assert policy.kind == PolicyKind.TRANSFER and policy.title == values["title"]
        assert policy.effective_at == T0 + timedelta(days=31)
        assert policy.announce_at == announce_at
        notice = policy.campaign
        assert notice.status == CampaignStatus.SCHEDULED and notice.send_at == announce_at
        assert notice.topic.slug == "policy"
        public_id = notice.public_id
        actions = s.execute(
            select(AuditEntry.actor, AuditEntry.action, AuditEntry.target_id)
            .where(AuditEntry.action.in_(("policy.announce", "campaign.schedule")))
            .order_by(AuditEntry.id)
        ).all()
    user = f"user:{staff['ops']}"
    assert actions == [(user, "campaign.schedule", public_id), (user, "policy.announce", "2026-04")]
    listing = ops_client.get("/dashboard/policies").get_data(as_text=True)
    assert "is announced: its notice goes out 2026-03-02 11:00 UTC" in listing
    row = re.search(r'<tr id="policy-2026-04".*?</tr>', listing, re.S).group(0)
    assert "transfer of data" in row and ">scheduled<" in row
    assert f'data-campaign="{public_id}"' in row
    assert f'href="/dashboard/campaigns/{public_id}"' in row
    # Submitting the same confirmation again announces nothing twice.
    again = create(ops_client, carried(page)).get_data(as_text=True)
    assert "exists already" in field_error(again, "version")


def test_an_announced_notice_shows_its_progress_once_sent(app, ops_client, db):
    """Promise: after the notice goes out the list shows its progress (sent, blocked,
    pending of planned), the counts the campaign's own progress page shows."""
    clock.freeze(T0)
    mixed_population(db)
    create(ops_client, form())  # announce_at empty: now
    Worker(app).run_due()
    listing = ops_client.get("/dashboard/policies").get_data(as_text=True)
    row = re.search(r'<tr id="policy-2026-04".*?</tr>', listing, re.S).group(0)
    assert '<span data-field="sent">4</span> sent' in row
    assert '<span data-field="blocked_total">5</span> blocked' in row
    assert '<span data-field="pending">0</span> pending' in row
    assert '<span data-field="planned">9</span>' in row
    assert "2011-07-06" in listing and "recorded when the service was installed" in listing


BAD = [
    ("version", {"version": "has space"}, "letters, digits"),
    ("version", {"version": ""}, "required"),
    ("title", {"title": "   "}, "required"),
    ("summary", {"summary": ""}, "required"),
    ("url", {"url": "javascript:alert(1)"}, "http(s) URL"),
    ("effective_at", {"effective_at": "next tuesday"}, "Not a valid datetime"),
    ("effective_at", {"effective_at": local(T0 + timedelta(days=10))}, "at least 30 days"),
    ("announce_at", {"announce_at": local(T0 - timedelta(days=1))}, "must not be in the past"),
    ("kind", {"kind": "merger"}, "Not a valid choice"),
]


@pytest.mark.parametrize(("field", "change", "message"), BAD, ids=[f"{b[0]}-{b[2]}" for b in BAD])
@pytest.mark.parametrize("step", ["preview", "create"])
def test_invalid_input_is_shown_beside_its_field_and_creates_nothing(
    app, ops_client, db, field, change, message, step
):
    """Promise: validation errors (the form's own and the domain's: notice period, past
    announcement) appear next to the field they concern, at either step, and nothing is
    recorded, scheduled or audited."""
    clock.freeze(T0)
    reply = (preview if step == "preview" else create)(ops_client, form(**change))
    assert reply.status_code == 200
    page = reply.get_data(as_text=True)
    if field == "kind":
        assert message in page
    else:
        assert message in field_error(page, field), page
        assert f'id="{field}" name="{field}"' in page or f'name="{field}"' in page
        assert 'aria-invalid="true"' in page
    assert "Nothing was announced" in page
    assert "Confirm: announce" not in page
    assert nothing_announced(db)


def test_versions_must_take_effect_in_order_and_a_known_version_is_refused(ops_client, db):
    """Promise: the domain's other checks reach the form: a version effective before the
    latest one is refused at effective_at, a known version at version."""
    clock.freeze(T0)
    create(ops_client, form(version="2026-05", effective_at=local(T0 + timedelta(days=60))))
    earlier = preview(ops_client, form()).get_data(as_text=True)
    assert "take effect in order" in field_error(earlier, "effective_at")
    known = preview(
        ops_client, form(version="2026-05", effective_at=local(T0 + timedelta(days=90)))
    ).get_data(as_text=True)
    assert "exists already" in field_error(known, "version")
    with db.session(read_only=True) as s:
        assert s.scalar(select(func.count(PolicyVersion.id))) == 2  # installed + 2026-05


def test_policy_forms_posted_without_their_csrf_token_are_refused(ops_client, db):
    """Promise: CSRF: preview and confirm without the token (or a forged one) are 400
    and nothing is announced."""
    for path in ("/dashboard/policies/preview", "/dashboard/policies"):
        assert ops_client.post(path, data=form()).status_code == 400
        assert ops_client.post(path, data={**form(), "csrf_token": "forged"}).status_code == 400
    assert nothing_announced(db)


def test_the_policies_page_needs_a_login(client, staff, db):
    """Promise: without a login the page redirects and a post announces nothing, even
    with a valid CSRF token from the login page."""
    reply = client.get("/dashboard/policies")
    assert reply.status_code == 302 and "/dashboard/login" in reply.headers["Location"]
    token = csrf_token(client, "/dashboard/login")
    reply = client.post("/dashboard/policies", data={**form(), "csrf_token": token})
    assert reply.status_code == 302 and "/dashboard/login" in reply.headers["Location"]
    assert nothing_announced(db)


def test_a_cancelled_notice_is_listed_as_never_taking_effect(app, admin_client, db):
    """Promise: the list tells ops that a version whose notice was cancelled never takes
    effect (people were not told of it), so a corrected version must be announced."""
    clock.freeze(T0)
    create(admin_client, form())
    with db.transaction() as s:
        policy = policies.get(s, "2026-04")
        campaigns.cancel(s, policy.campaign, "test")
    listing = admin_client.get("/dashboard/policies").get_data(as_text=True)
    row = re.search(r'<tr id="policy-2026-04".*?</tr>', listing, re.S).group(0)
    assert ">cancelled<" in row and "never takes effect" in row


@pytest.mark.postgres_only
def test_a_version_announced_concurrently_is_refused_beside_its_field_not_a_500(
    app, ops_client, db, monkeypatch
):
    """Promise: a double click on confirm (two requests past the known-version check at
    once, as PostgreSQL allows) announces the version once; the second gets the error
    beside the version field, not a 500."""
    clock.freeze(T0)
    check = policies._check

    def another_request_announces_meanwhile(session, what, *args):
        check(session, what, *args)  # this request's checks pass...
        monkeypatch.setattr(policies, "_check", check)
        settings = policies.NoticeSettings(30, "Org", "x@example.test")
        with db.transaction() as other:  # ...and another request announces it first
            policies.announce(other, what, settings, "test")

    monkeypatch.setattr(policies, "_check", another_request_announces_meanwhile)
    reply = create(ops_client, form())
    assert reply.status_code == 200
    assert "exists already" in field_error(reply.get_data(as_text=True), "version")
    with db.session(read_only=True) as s:
        assert s.scalar(select(func.count(PolicyVersion.id))) == 2  # installed + one
