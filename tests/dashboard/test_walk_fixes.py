"""What a walk through the dashboard found (issue 14, item 5), each fixed and held here:
errors in the staff layout, `/` leads somewhere, captured mail search and page bounds,
the audit log's address search / date order / target links / API-created campaigns,
the paused-runner banner, the live campaign page's controls, the demo's mail, wording."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import campaigns, policies
from mailprefs.domain.models import AuditEntry, Subscriber
from mailprefs.domain.outbox_models import Campaign, CampaignKind, Delivery
from mailprefs.scheduling import view
from tests.conftest import bearer
from tests.dashboard.conftest import post_form
from tests.dashboard.helpers import campaign, people
from tests.dashboard.test_jobs import act, start_scheduler_once
from tests.support.factories import NOTICE_SETTINGS, announcement, person


def test_dashboard_errors_use_the_staff_layout_not_the_recipients_page(ops_client):
    """Promise: a 404 or 403 under /dashboard shows the staff navigation and a way back,
    never the recipients' "write to us" page."""
    missing = ops_client.get("/dashboard/campaigns/no-such-campaign")
    assert missing.status_code == 404
    page = missing.get_data(as_text=True)
    assert 'aria-label="Dashboard"' in page and "Back to the dashboard" in page
    assert "write to us" not in page
    unrouted = ops_client.get("/dashboard/no/such/page")
    assert unrouted.status_code == 404 and "Back to the dashboard" in unrouted.get_data(
        as_text=True
    )
    forbidden = ops_client.get("/dashboard/access")  # admins only
    assert forbidden.status_code == 403
    text = forbidden.get_data(as_text=True)
    assert "Only an admin may do this." in text and "write to us" not in text
    assert "Your login (ops)" in text


def test_the_site_root_leads_to_the_dashboard(client):
    """Promise: `/` is not a 404: it redirects to the dashboard (its login when needed)."""
    reply = client.get("/")
    assert reply.status_code == 302 and reply.location.endswith("/dashboard/")
    assert client.get("/", follow_redirects=True).status_code == 200


def test_every_dashboard_page_has_a_skip_link_to_main(ops_client):
    """Promise: keyboard users can skip the navigation (the first link goes to #main)."""
    page = ops_client.get("/dashboard/campaigns").get_data(as_text=True)
    body = page.split("<body>", 1)[1]
    assert body.lstrip().startswith('<a class="skip" href="#main">Skip to content</a>')
    assert '<main id="main" tabindex="-1">' in page


def test_captured_mail_is_searchable_and_pages_stay_in_bounds(app, db, ops_client):
    """Promise: captured mail can be searched by To/From/Subject; a page past the end
    shows the last page (never "Page 999 of 2")."""
    with db.transaction() as s:
        for i in range(30):
            person(s, f"reader{i:02d}@example.com", opted_in=("offers",))
    public_id = campaign(db, subject="Thirty offers", in_minutes=None)
    with db.transaction() as s:
        campaigns.schedule(s, campaigns.get(s, public_id), clock.now(), "test")
    Worker(app).run_due()
    found = ops_client.get("/dashboard/mail?q=READER07@").get_data(as_text=True)
    assert "reader07@example.com" in found and "reader08@example.com" not in found
    assert "1 message match" in found
    none = ops_client.get("/dashboard/mail?q=nobody-at-all").get_data(as_text=True)
    assert "No message matches." in none
    far = ops_client.get("/dashboard/mail?page=999").get_data(as_text=True)
    assert "Page 2 of 2" in far and "Page 999" not in far
    bad = ops_client.get("/dashboard/mail?page=abc")
    assert bad.status_code == 200 and "Page 1 of 2" in bad.get_data(as_text=True)


def test_campaign_and_audit_pages_past_the_end_show_the_last_page(ops_client, db):
    """Promise: the other paged lists clamp the page too."""
    for i in range(26):
        campaign(db, subject=f"Offer {i}")
    page = ops_client.get("/dashboard/campaigns?page=999").get_data(as_text=True)
    assert "Page 2 of 2" in page
    audit_page = ops_client.get("/dashboard/audit?page=50").get_data(as_text=True)
    assert "<td>login</td>" in audit_page and "Nothing matches." not in audit_page


def test_audit_log_found_by_a_persons_address_says_how_and_is_itself_audited(
    app, ops_client, db, staff
):
    """Promise: an address typed as the target finds that person's entries (the log holds
    ids only), and says so; an unknown address says so rather than a silent nothing."""
    from tests.dashboard.test_complaints_audit_mail import complaint_of

    complaint_id, person_id = complaint_of(db, "Pat.Search@example.com")
    ops_client.get(f"/dashboard/complaints/{complaint_id}")  # a staff read: audited
    page = ops_client.get("/dashboard/audit?target=pat.search@EXAMPLE.com").get_data(as_text=True)
    assert f"searching subscriber {person_id}" in page
    assert "subscriber.read" in page and "pat.search@EXAMPLE.com" in page  # the input only
    unknown = ops_client.get("/dashboard/audit?target=nobody@example.com").get_data(as_text=True)
    assert "Nobody registered has this address" in unknown and "0 entries" in unknown
    staff_page = ops_client.get("/dashboard/audit?actor=ops@example.com").get_data(as_text=True)
    assert f"searching actor user:{staff['ops']}" in staff_page
    with db.session(read_only=True) as s:
        lookup = s.scalar(select(AuditEntry).where(AuditEntry.action == "subscriber.lookup"))
        assert lookup.target_id == person_id and lookup.actor == f"user:{staff['ops']}"


def test_audit_log_refuses_from_after_to_and_a_malformed_date(ops_client):
    """Promise: a From after To is an error in words, not an empty result; so is a date
    that is not one."""
    page = ops_client.get("/dashboard/audit?since=2026-05-02&until=2026-05-01")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "From is after To" in text and 'role="alert"' in text
    bad = ops_client.get("/dashboard/audit?since=yesterday").get_data(as_text=True)
    assert "From must be a date like 2026-12-01." in bad


def test_audit_targets_link_to_their_pages(ops_client, db, staff):
    """Promise: a campaign, complaint or subscriber named in the log is a link."""
    from tests.dashboard.test_complaints_audit_mail import complaint_of

    public_id = campaign(db)
    post_form(
        ops_client,
        f"/dashboard/campaigns/{public_id}/pause",
        token_from=f"/dashboard/campaigns/{public_id}",
    )
    complaint_id, person_id = complaint_of(db)
    ops_client.get(f"/dashboard/complaints/{complaint_id}")
    page = ops_client.get("/dashboard/audit").get_data(as_text=True)
    assert f'href="/dashboard/campaigns/{public_id}"><code>{public_id}</code></a>' in page
    assert f"><code>{person_id}</code></a>" in page


def test_a_campaign_created_through_the_api_is_in_the_audit_log_once(
    client, marketing_key, db, ops_client
):
    """Promise: `POST /api/v1/campaigns` writes `campaign.create` under the key; a replay
    with the same Idempotency-Key writes nothing more."""
    body = {"topic": "offers", "subject": "From the API", "text": "Hello"}
    headers = {**bearer(marketing_key), "Idempotency-Key": "create-once"}
    first = client.post("/api/v1/campaigns", json=body, headers=headers)
    assert first.status_code == 201
    again = client.post("/api/v1/campaigns", json=body, headers=headers)
    assert again.get_json()["id"] == first.get_json()["id"]
    with db.session(read_only=True) as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.action == "campaign.create")).all()
    assert len(entries) == 1
    assert entries[0].target_id == first.get_json()["id"]
    assert entries[0].actor.startswith("key:") and entries[0].detail["topic"] == "offers"
    page = ops_client.get("/dashboard/audit?action=campaign.create").get_data(as_text=True)
    assert first.get_json()["id"] in page


def test_campaigns_page_warns_while_the_due_job_runner_is_paused(app, admin_client, db):
    """Promise: with `fire-due` paused, the Campaigns page says nothing scheduled starts,
    and the banner goes when it is resumed."""
    start_scheduler_once(app)
    assert "data-holding" not in admin_client.get("/dashboard/campaigns").get_data(as_text=True)
    act(admin_client, "fire-due", "pause")
    assert "fire-due" in view.paused_recurring(app)
    page = admin_client.get("/dashboard/campaigns").get_data(as_text=True)
    assert 'data-holding="fire-due"' in page
    assert "no scheduled campaign or policy notice starts" in page
    act(admin_client, "fire-due", "resume")
    assert "data-holding" not in admin_client.get("/dashboard/campaigns").get_data(as_text=True)


def test_the_empty_campaigns_page_says_how_to_start(ops_client):
    """Promise: with no campaign, the page shows how to create one (not just "none")."""
    page = ops_client.get("/dashboard/campaigns").get_data(as_text=True)
    assert "No campaigns yet" in page and "/api/v1/campaigns" in page
    filtered = ops_client.get("/dashboard/campaigns?status=paused").get_data(as_text=True)
    assert "No campaign matches" in filtered


def test_campaign_progress_says_which_controls_the_status_allows(app, db, ops_client):
    """Promise: the live JSON carries the controls of the status it reports, so a page
    that saw the campaign finish drops Pause (the script hides the rest)."""
    with db.transaction() as s:
        people(s, 2)
    public_id = campaign(db, in_minutes=None)
    scheduled = ops_client.get(f"/dashboard/campaigns/{public_id}/progress.json").get_json()
    assert scheduled["controls"] == ["cancel"]  # a draft
    with db.transaction() as s:
        campaigns.schedule(s, campaigns.get(s, public_id), clock.now(), "test")
    Worker(app).run_due()
    sent = ops_client.get(f"/dashboard/campaigns/{public_id}/progress.json").get_json()
    assert sent["status"] == "sent" and sent["controls"] == []


def test_a_stale_pause_on_a_sent_campaign_says_what_it_is_now(app, db, ops_client):
    """Promise: pressing a button the campaign no longer allows (it finished meanwhile)
    answers in words with its current status, never the raw state-machine error."""
    with db.transaction() as s:
        people(s, 1)
    public_id = campaign(db, in_minutes=None)
    token_page = f"/dashboard/campaigns/{public_id}"
    with db.transaction() as s:
        campaigns.schedule(s, campaigns.get(s, public_id), clock.now(), "test")
    Worker(app).run_due()
    reply = post_form(
        ops_client,
        f"/dashboard/campaigns/{public_id}/pause",
        token_from=token_page,
        follow_redirects=True,
    )
    page = reply.get_data(as_text=True)
    assert "The campaign is sent now, so it cannot be paused." in page
    assert "cannot become" not in page


def test_blocked_reasons_are_shown_in_words(app, db, ops_client):
    """Promise: the campaign page names why people were blocked in words."""
    from mailprefs.domain import consent
    from mailprefs.domain.consent import Evidence
    from mailprefs.domain.topics import get_topic

    with db.transaction() as s:
        who = person(s, "leaver@example.com", opted_in=("offers",))
    public_id = campaign(db, in_minutes=None)
    with db.transaction() as s:
        campaigns.schedule(s, campaigns.get(s, public_id), clock.now(), "test")
    with db.transaction() as s:
        consent.opt_out(
            s, s.get(Subscriber, who.id), get_topic(s, "offers"), Evidence(source="api")
        )
    Worker(app).run_due()
    page = ops_client.get(f"/dashboard/campaigns/{public_id}").get_data(as_text=True)
    data = ops_client.get(f"/dashboard/campaigns/{public_id}/progress.json").get_json()
    assert data["stats"]["blocked"] == {"opted_out": 1}
    assert '<th scope="row">opted out</th>' in page
    assert data["reason_words"] == {"opted_out": "opted out"}


def test_policy_notice_period_error_names_the_earliest_allowed_date(app, db):
    """Promise: too short a notice period is refused with the earliest allowed date as a
    person reads it, not a raw timestamp."""
    from datetime import UTC, datetime

    from mailprefs.domain.errors import Invalid

    clock.freeze(datetime(2026, 3, 2, 9, 0, 30, tzinfo=UTC))
    three_days = announcement("2026-04", clock.now() + timedelta(days=3))
    with pytest.raises(Invalid) as refused, db.transaction() as s:
        policies.announce(s, three_days, NOTICE_SETTINGS, "test")
    detail = refused.value.errors[0]["detail"]
    assert detail.startswith("must be on or after 2026-04-01 09:01 UTC")
    assert "T09:00" not in detail and "+00:00" not in detail


def test_demo_data_sends_no_confirmation_to_the_person_it_confirms(app, runner, db):
    """Promise: `seed-demo` queues a confirmation only for people still pending, never for
    the demo's already-confirmed newsletter reader."""
    result = runner.invoke(args=["mailprefs", "seed-demo"])
    assert result.exit_code == 0, result.output
    hash_key = app.config["MAILPREFS_HASH_KEY"]
    from mailprefs.domain import subscribers

    with db.session(read_only=True) as s:
        alice = subscribers.find_by_address(s, "alice@example.com", hash_key)
        dan = subscribers.find_by_address(s, "dan@example.com", hash_key)
        confirmations = s.scalars(
            select(Delivery.subscriber_id)
            .join(Campaign, Campaign.id == Delivery.campaign_id)
            .where(Campaign.kind == CampaignKind.CONFIRMATION)
        ).all()
    assert alice.id not in confirmations
    assert dan.id in confirmations  # still pending: his confirmation is due


def test_wording_an_active_subscriber_and_the_org_name_once_dotted(app, db, client, ops_client):
    """Promise: "An active subscriber" (not "A active"), and an org name ending in a dot
    is not followed by a second one ("Ltd.." on the login page)."""
    app.config["MAILPREFS_ORG_NAME"] = "Example Ltd."
    login = client.get("/dashboard/login").get_data(as_text=True)
    assert "Example Ltd.." not in login and "For staff of Example Ltd." in login
    with db.transaction() as s:
        person(s, "someone@example.com", opted_in=("offers",))
    reply = post_form(
        ops_client,
        "/dashboard/suppressions/add",
        {"add-email": "someone@example.com", "add-note": "asked by phone"},
        token_from="/dashboard/suppressions",
        follow_redirects=True,
    )
    page = reply.get_data(as_text=True)
    assert "An active subscriber has this address." in page and "A active" not in page


def test_a_closed_accounts_preference_page_says_so_once(app, db, client):
    """Promise: after closing the account, the page's heading says it is closed and the
    notice says what just happened: the same words are not shown twice."""
    from tests.prefs.support import make_person
    from tests.prefs.test_preferences import url

    ann = make_person(db, "ann.closed@example.org", opted_in=("offers",))
    reply = client.post(url(ann), data={"action": "close", "confirm": "yes"})
    page = client.get(reply.headers["Location"]).get_data(as_text=True)
    assert page.count("Your account is closed") == 1
    assert "Done: you closed it just now." in page
