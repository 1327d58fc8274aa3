"""An unsubscribe takes effect for every send after it, including a campaign that is
sending right now: the worker asks the gate again for each message."""

from __future__ import annotations

import email
import email.policy

import pytest
from sqlalchemy import select

from mailprefs.delivery.transport import SMTPTransport
from mailprefs.delivery.worker import Worker
from mailprefs.domain.outbox_models import Delivery, DeliveryStatus
from tests.prefs.support import ONE_CLICK, events_of, make_person, path_of
from tests.support.factories import campaign_due_now

VICTIM = "p09@example.com"


@pytest.fixture
def app_config(sink):
    return {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port, "MAILPREFS_BATCH_SIZE": 4}


def start_campaign(db, subject: str) -> int:
    with db.transaction() as s:
        return campaign_due_now(s, subject=subject, text="Hello!").id


def received(sink, subject: str) -> list[str]:
    out = []
    for _from, rcpts, raw in sink.messages:
        if email.message_from_bytes(raw, policy=email.policy.default)["Subject"] == subject:
            out += rcpts
    return sorted(out)


class ClickAfterFirstMessage(SMTPTransport):
    """A real SMTP transport; after the campaign's first message leaves, the victim
    presses one-click in their mail client (an HTTP POST to the app)."""

    def __init__(self, config, client, url):
        super().__init__(config)
        self.client, self.url, self.sent = client, url, 0

    def send(self, decision, message):
        super().send(decision, message)
        self.sent += 1
        if self.sent == 1:
            assert self.client.post(self.url, data=ONE_CLICK).status_code == 200


def test_one_click_during_a_sending_campaign_stops_that_persons_mail(app, client, db, sink):
    """Ten people on offers. The first campaign reaches all ten; from its mail we take
    the victim's List-Unsubscribe link. A second campaign starts; after its first
    message the victim POSTs that link: the victim gets nothing more (the row is
    blocked as opted_out), everyone else gets the second campaign once."""
    people = [make_person(db, f"p{i:02d}@example.com", opted_in=("offers",)) for i in range(10)]
    start_campaign(db, "First")
    Worker(app).run_due()
    assert received(sink, "First") == sorted(f"p{i:02d}@example.com" for i in range(10))
    (raw,) = [r for _f, rcpts, r in sink.messages if rcpts == [VICTIM]]
    header = email.message_from_bytes(raw, policy=email.policy.default)["List-Unsubscribe"]
    url = path_of(str(header).split("<", 1)[1].split(">", 1)[0])

    second = start_campaign(db, "Second")
    transport = ClickAfterFirstMessage(app.config, client, url)
    summary = Worker(app, transport=transport).run_due()

    got = received(sink, "Second")
    assert VICTIM not in got and len(got) == 9 == len(set(got))
    assert summary.blocked == 1
    with db.session(read_only=True) as s:
        blocked = s.execute(
            select(Delivery.status, Delivery.reason).where(
                Delivery.campaign_id == second, Delivery.status == DeliveryStatus.BLOCKED
            )
        ).all()
    assert blocked == [(DeliveryStatus.BLOCKED, "opted_out")]
    assert events_of(db, people[9])[-1].source == "one_click"
