"""Sending test copies: ahead of every batch, one message each, the gate asked at send.

A test copy's outbox row (`mailprefs.domain.test_copies`) names no subscriber; the staff
address is on its campaign. Each is checked in one short transaction (still ours, still
queued, and the gate: is the address a staff address now?), then built once and sent
outside any transaction. A relay's refusal fails the row and goes on no suppression list:
the address is staff, not a recipient, and the campaign's own sends are unaffected.
Once a copy is settled (sent, blocked, failed) its campaign forgets the address.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.delivery import outbox
from mailprefs.delivery.message import TEST_COPY_ID, MessageBuilder
from mailprefs.delivery.outbox import QUEUED, Claimed
from mailprefs.delivery.transport import (
    PermanentFailure,
    TemporaryFailure,
    Transport,
    transport_for,
)
from mailprefs.delivery.types import BuiltMessage, CampaignInfo, RecipientInfo
from mailprefs.domain import gate
from mailprefs.domain import test_copies as rules
from mailprefs.domain.outbox_models import Campaign, CampaignKind, Delivery, DeliveryStatus
from mailprefs.domain.templating import TemplateInvalid, placeholder_attributes
from mailprefs.logs import scrub

if TYPE_CHECKING:
    from mailprefs.delivery.worker import Summary, Worker

# Test copies are asked for ten at most at a time; a few requests fit in one claim.
CLAIM_LIMIT = 50


def send_all(worker: Worker, summary: Summary) -> None:
    """Send every due test copy, adding the outcomes to `summary`."""
    with worker.db.transaction() as session:
        claimed = outbox.claim(
            session,
            worker.worker_id,
            limit=CLAIM_LIMIT,
            lease=worker.lease,
            now=clock.now(),
            test_copies=True,
        )
    if not claimed:
        return
    worker._in_flight.extend(claimed)  # for `recovery.settle`, should one of them fail
    # A connection of their own, for this call only: copies are few, and must not wait
    # behind (or be mixed into) the pool's batch in flight.
    transport = worker.transport or transport_for(worker.app.config)
    try:
        for index, item in enumerate(claimed):
            if worker.stop.is_set():
                with worker.db.engine.begin() as connection:
                    ids = [c.id for c in claimed[index:]]
                    outbox.release(connection, ids, worker.worker_id)
                return
            _send_one(worker, transport, item, summary)
    finally:
        if transport is not worker.transport:
            transport.close()


def _send_one(worker: Worker, transport: Transport, item: Claimed, summary: Summary) -> None:
    now = clock.now()
    with worker.db.transaction() as session:
        ours = session.execute(
            update(Delivery)
            .where(
                Delivery.id == item.id,
                Delivery.lease_owner == worker.worker_id,
                Delivery.status == QUEUED,
            )
            .values(lease_until=now + worker.lease)
        ).rowcount
        if ours != 1:
            summary.skipped += 1
            return
        copy = session.get(Campaign, item.campaign_id)
        address = (copy.meta or {}).get("to", "")
        staff = rules.staff_addresses(session, worker.app.config.get("MAILPREFS_TEST_ADDRESSES"))
        # The gate, once, at send: a login closed since the request gets no copy.
        decision = gate.decide_test_copy(address, staff)
        if not decision.allowed:
            _finish(session, item, DeliveryStatus.BLOCKED, reason=decision.reason, decided_at=now)
            summary.blocked += 1
            return
        # Built as a marked copy of the campaign it tests (its id in the links).
        info = dataclasses.replace(
            CampaignInfo.of(copy),
            kind=CampaignKind.CAMPAIGN.value,
            public_id=copy.meta.get("test_of", copy.public_id),
        )
    try:
        message = _build(worker, info, address)
    except (ValueError, TemplateInvalid) as exc:
        _failed(worker, item, f"cannot build the message: {exc}", summary)
        return
    try:
        transport.send(decision, message)
    except TemporaryFailure as exc:
        with worker.db.engine.begin() as connection:
            retried = outbox.mark_retry(connection, item, str(exc), worker.retry, clock.now())
        if retried:
            summary.retrying += 1
        else:
            with worker.db.transaction() as session:
                _forget_address(session, item)
            summary.failed += 1
        return
    except PermanentFailure as exc:
        _failed(worker, item, str(exc), summary)
        return
    worker._in_hand[item.id] = message.message_id  # it left: see `recovery.settle`
    with worker.db.transaction() as session:
        now = clock.now()
        _finish(
            session,
            item,
            DeliveryStatus.SENT,
            sent_at=now,
            decided_at=now,
            message_id=message.message_id,
            last_error=None,
        )
    worker._in_hand.pop(item.id, None)  # recorded
    summary.sent += 1


def _build(worker: Worker, info: CampaignInfo, address: str) -> BuiltMessage:
    builder = MessageBuilder(worker.settings, worker.tokens, info, test_copy=True)
    attributes = placeholder_attributes(info.subject, info.text, info.html)
    return builder.build(RecipientInfo(TEST_COPY_ID, address, attributes))


def _failed(worker: Worker, item: Claimed, error: str, summary: Summary) -> None:
    with worker.db.transaction() as session:
        _finish(
            session,
            item,
            DeliveryStatus.FAILED,
            reason="test_copy_failed",
            attempts=item.attempts + 1,
            last_error=scrub(error)[:512],
        )
    summary.failed += 1


def _finish(session: Session, item: Claimed, status: DeliveryStatus, **values: Any) -> None:
    session.execute(
        update(Delivery)
        .where(Delivery.id == item.id)
        .values(status=status, lease_owner=None, lease_until=None, **values)
    )
    _forget_address(session, item)


def _forget_address(session: Session, item: Claimed) -> None:
    """Settled: the copy no longer needs the staff address, so it is not kept."""
    copy = session.get(Campaign, item.campaign_id)
    copy.meta = {key: value for key, value in (copy.meta or {}).items() if key != "to"}
