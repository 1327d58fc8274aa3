"""Results per campaign (delivered, blocked in words, bounces, complaints and
unsubscribes attributed to it, day by day) and the Overview page (people by state over
time, opt-outs, rates per stream, the queue), from real sends, bounces and clicks."""

from __future__ import annotations

from sqlalchemy import select

from mailprefs import clock
from mailprefs.delivery.worker import Worker
from mailprefs.domain import bounces, campaigns, consent, subscribers
from mailprefs.domain.consent import Evidence
from mailprefs.domain.outbox_models import Campaign, Delivery
from mailprefs.domain.topics import get_topic
from mailprefs.extensions import get_tokens
from mailprefs.web.dashboard.results import DAYS, campaign_results, overview
from tests.dashboard.helpers import campaign
from tests.support.factories import HASH_KEY, person


def sent_campaign(app, db) -> tuple[str, dict[str, str]]:
    """Five people on offers (one opted out first), a campaign sent to them."""
    ids = {}
    with db.transaction() as s:
        for name in ("ann", "bob", "cat", "dan", "eve"):
            ids[name] = person(s, f"{name}@example.com", opted_in=("offers",)).public_id
        eve = subscribers.find_by_public_id(s, ids["eve"])
        consent.opt_out(s, eve, get_topic(s, "offers"), Evidence(source="api"))
    public_id = campaign(db, in_minutes=None, subject="Results test")
    with db.transaction() as s:
        campaigns.schedule(s, campaigns.get(s, public_id), clock.now(), "test")
    Worker(app).run_due()
    return public_id, ids


def message_id_of(db, public_id: str, person_id: str) -> str:
    with db.session(read_only=True) as s:
        who = subscribers.find_by_public_id(s, person_id)
        return s.scalar(
            select(Delivery.message_id)
            .join(Campaign, Campaign.id == Delivery.campaign_id)
            .where(Campaign.public_id == public_id, Delivery.subscriber_id == who.id)
        )


def hard_bounce(db, public_id: str, ids: dict[str, str], name: str = "bob") -> bounces.Event:
    """A hard bounce of `name`'s message from this campaign."""
    message_id = message_id_of(db, public_id, ids[name])
    return bounces.Event("bounce", f"{name}@example.com", bounce="hard", message_id=message_id)


def ingest(s, events: list[bounces.Event]) -> None:
    bounces.ingest(s, events, hash_key=HASH_KEY, thresholds=bounces.Thresholds(3, 7), actor="test")


def test_a_campaigns_results_attribute_bounces_complaints_and_unsubscribes(
    app, db, client, ops_client
):
    """Promise: a hard bounce and a complaint on this campaign's messages, and a one-click
    unsubscribe through its link, are counted for it, with rates and per day; the reason
    others were not sent is in words."""
    public_id, ids = sent_campaign(app, db)
    with db.transaction() as s:
        complaint = bounces.Event(
            "complaint",
            "cat@example.com",
            source="arf",
            message_id=message_id_of(db, public_id, ids["cat"]),
        )
        ingest(s, [hard_bounce(db, public_id, ids), complaint])
    token = get_tokens().unsubscribe(ids["ann"], "offers", public_id)
    assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
    with db.session(read_only=True) as s:
        results = campaign_results(s, campaigns.get(s, public_id))
    assert results["sent"] == 4 and results["blocked"] == {"opted_out": 1}
    assert (results["hard_bounces"], results["complaints"], results["unsubscribes"]) == (1, 1, 1)
    assert results["rates"] == {"bounces": 25.0, "complaints": 25.0, "unsubscribes": 25.0}
    today = clock.now().strftime("%Y-%m-%d")
    assert results["days"] == [
        {"day": today, "sent": 4, "bounces": 1, "complaints": 1, "unsubscribes": 1}
    ]
    page = ops_client.get(f"/dashboard/campaigns/{public_id}").get_data(as_text=True)
    assert '<dd data-result="unsubscribes">1</dd>' in page
    assert "Not sent: 1 opted out." in page


def test_the_overview_counts_people_opt_outs_streams_and_the_queue(app, db, ops_client):
    """Promise: the overview shows people by state (now and per day), opt-outs per day,
    bounce and complaint rates per stream, and what waits in the queue."""
    public_id, ids = sent_campaign(app, db)
    with db.transaction() as s:
        subscribers.deactivate(
            s, subscribers.find_by_public_id(s, ids["dan"]), Evidence(source="preference_page")
        )
        ingest(s, [hard_bounce(db, public_id, ids)])
    campaign(db, in_minutes=60)  # scheduled later: nothing queued yet
    with db.session(read_only=True) as s:
        data = overview(s)
    assert data["now"] == {"active": 4, "deactivated": 1, "erased": 0}
    assert len(data["people"]) == DAYS
    assert data["people"][-1] == {
        "day": clock.now().strftime("%Y-%m-%d"),
        "active": 4,
        "deactivated": 1,
        "erased": 0,
    }
    assert data["people"][0]["active"] == 0  # nobody was registered 30 days ago
    assert data["opt_outs_total"] >= 2  # eve's, and dan's as he closed his account
    marketing = next(x for x in data["streams"] if x["stream"] == "marketing")
    assert marketing == {
        "stream": "marketing",
        "sent": 4,
        "bounces": 1,
        "complaints": 0,
        "bounce_rate": 25.0,
        "complaint_rate": 0.0,
    }
    assert data["queue"] == {"queued": 0, "due": 0, "later": 0}
    page = ops_client.get("/dashboard/overview").get_data(as_text=True)
    assert '<dd data-overview="deactivated">1</dd>' in page
    assert "<td>25.0%</td>" in page and "<svg" in page
