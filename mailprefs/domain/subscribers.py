"""People: registration with consent, deactivation, erasure, children, export."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.domain import audit, confirmations, consent, erasure, policies, suppression
from mailprefs.domain.addresses import address_hash, normalise
from mailprefs.domain.consent import Evidence
from mailprefs.domain.errors import Conflict, Gone, Invalid, NotFound
from mailprefs.domain.hashed import meet as meet_hashed_suppression
from mailprefs.domain.models import (
    ConsentAction,
    Subscriber,
    SubscriberStatus,
    SuppressionReason,
    Topic,
    TopicState,
)
from mailprefs.domain.numbers import NON_FINITE_DETAIL, first_non_finite
from mailprefs.domain.outbox_models import BounceEvent, Complaint, Delivery
from mailprefs.domain.registration import Registration, insert_person, lookup
from mailprefs.domain.topics import get_topic

MINIMUM_AGE = 13
# Attribute names that mean a birth date or an age, folded (lower case, letters and
# digits only): `birth_date`, `BirthDate`, `date-of-birth`, `DOB`, `Age` ... all count.
BIRTH_DATE_NAMES = frozenset({"birthdate", "dateofbirth", "dob", "born", "bornon"})
AGE_NAMES = frozenset({"age", "ageyears", "ageinyears"})


class ClosedAccount(Conflict):
    """The address belongs to a person who closed their account; nothing was changed.

    Raised only after every check of the registration passed, so a caller acting on the
    person's behalf (the organisation's site) can ask the person to confirm instead
    (domain/reactivation.py). `topics` are the topics the registration asked for."""

    def __init__(self, detail: str, subscriber: Subscriber, topics: list[Topic]) -> None:
        super().__init__(detail)
        self.subscriber = subscriber
        self.topics = topics


@dataclass
class ConsentRequest:
    topic: str
    evidence: Evidence
    action: ConsentAction = ConsentAction.OPT_IN


def age_in_years(born: date, today: date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def check_attributes(attributes: dict[str, Any]) -> None:
    """Refuse a NaN or infinity anywhere in the attributes, whichever door they came in
    by (API, import, pages): one such row would break audience queries for everyone."""
    where = first_non_finite(attributes, "attributes")
    if where is not None:
        raise Invalid.field(where, NON_FINITE_DETAIL)


def age_attribute(name: str) -> str | None:
    """ "birth_date" or "age" when an attribute name means one of them, else None.

    Names are compared without case and without separators: `Age`, `AGE`, `birthDate`,
    `Birth-Date`, `date_of_birth`, `DOB` all count (docs/security.md lists them)."""
    folded = re.sub(r"[^a-z0-9]", "", name.lower())
    if folded in BIRTH_DATE_NAMES:
        return "birth_date"
    if folded in AGE_NAMES:
        return "age"
    return None


def check_age(attributes: dict[str, Any], today: date) -> None:
    """Refuse an intake that shows an age under 13 (Invalid names the attribute)."""
    for key, raw in attributes.items():
        meaning = age_attribute(key)
        if meaning == "birth_date":
            try:
                born = date.fromisoformat(raw) if isinstance(raw, str) else None
            except ValueError:
                born = None
            if born is None or born > today:
                raise Invalid.field(f"attributes.{key}", "must be a date in the past (YYYY-MM-DD)")
            if age_in_years(born, today) < MINIMUM_AGE:
                raise Invalid.field(
                    f"attributes.{key}",
                    f"we do not keep data about anyone under {MINIMUM_AGE}",
                )
        elif meaning == "age":
            if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= 150:
                raise Invalid.field(f"attributes.{key}", "must be a whole number of years")
            if raw < MINIMUM_AGE:
                raise Invalid.field(
                    f"attributes.{key}", f"we do not keep data about anyone under {MINIMUM_AGE}"
                )


def find_by_public_id(
    session: Session, public_id: str, *, allow_erased: bool = False
) -> Subscriber:
    """The person with this public id; Gone if erased (unless `allow_erased`)."""
    subscriber = session.scalar(select(Subscriber).where(Subscriber.public_id == public_id))
    if subscriber is None:
        raise NotFound("no subscriber with this id")
    if subscriber.status == SubscriberStatus.ERASED and not allow_erased:
        raise Gone("this person's data was erased; only the hash of the address is kept")
    return subscriber


def resolve_recipient(session: Session, to: str, hash_key: str) -> Subscriber | None:
    """A public id or an address. An unknown id is an error; an unknown address is not
    (the gate records it as `unknown_recipient`)."""
    if "@" in to:
        hashed = address_hash(normalise(to, field="to"), hash_key)
        return session.scalar(select(Subscriber).where(Subscriber.email_hash == hashed))
    return find_by_public_id(session, to, allow_erased=True)


def find_by_address(session: Session, address: str, hash_key: str) -> Subscriber | None:
    """The person with this address (looked up through its keyed hash), or None."""
    hashed = address_hash(normalise(address), hash_key)
    return session.scalar(select(Subscriber).where(Subscriber.email_hash == hashed))


def register(
    session: Session,
    *,
    email: str,
    attributes: dict[str, Any] | None,
    consents: list[ConsentRequest],
    hash_key: str,
    evidence: Evidence,
    reopen: bool = False,
) -> Registration:
    """Register a person (or re-register one), apply their consents.

    Everything is checked before anything is written, so a refusal stores nothing.
    A person who closed their account (opted out entirely) must re-register themselves
    (invariant 5): only a path acting for the person passes `reopen=True` (a registration
    they confirmed); for anyone else, a key included, it is a Conflict and nothing changes.
    A new person costs one lookup, the person's INSERT, and per consent its event and state.
    """
    address = normalise(email)
    attributes = dict(attributes or {})
    check_attributes(attributes)
    check_age(attributes, clock.now().date())
    hashed = address_hash(address, hash_key)
    rows = lookup(session, address, hashed)
    found = rows[0]
    if found.never_again:
        raise Conflict(
            "this address belonged to a person whose data was erased; it cannot be registered again"
        )
    if not found.suppressed and found.hashed:
        meet_hashed_suppression(session, address, hashed)
    active_topics = {row.Topic.slug: row.Topic for row in rows if row.Topic is not None}
    topics: list[tuple[Topic, ConsentRequest]] = []
    for i, request in enumerate(consents):
        topic = active_topics.get(request.topic)
        if topic is None:  # `get_topic` says why, naming the field
            topic = get_topic(session, request.topic, f"consents.{i}.topic")
        topics.append((topic, request))
    now = clock.now()
    subscriber = found.Subscriber
    if subscriber is not None and subscriber.status == SubscriberStatus.DEACTIVATED and not reopen:
        raise ClosedAccount(
            "this person closed their account; only they can reopen it, by a registration "
            "they confirm themselves",
            subscriber,
            [topic for topic, request in topics if request.action == ConsentAction.OPT_IN],
        )
    created = subscriber is None
    reactivated = False
    if created:
        subscriber = insert_person(
            session,
            {
                "email": address,
                "email_hash": hashed,
                "attributes": attributes,
                "status": SubscriberStatus.ACTIVE,
                "created_at": now,
                "updated_at": now,
            },
        )
        if subscriber is None:
            # Someone registered the same address a moment ago: treat it as existing.
            created = False
            subscriber = session.scalars(
                select(Subscriber).where(Subscriber.email_hash == hashed)
            ).one()
    if not created:
        if attributes:
            subscriber.attributes = {**subscriber.attributes, **attributes}
        subscriber.updated_at = now
        if subscriber.status == SubscriberStatus.DEACTIVATED:
            consent.account_event(session, subscriber, ConsentAction.REACTIVATE, evidence)
            reactivated = True
    states = dict.fromkeys(active_topics, TopicState.NONE) if created else None
    for topic, request in topics:
        # A new person has no stored state for a topic still at NONE here.
        fresh = states is not None and states.get(topic.slug) == TopicState.NONE
        state, event = consent.change(
            session, subscriber, topic, request.action, request.evidence, no_state_yet=fresh
        )
        if states is not None:
            states[topic.slug] = state
        confirmations.after_change(
            session, subscriber, topic, state, event, evidence.actor or "api"
        )
    session.flush()
    if (created or reactivated) and found.broadcast:
        # Registered while a policy notice is going out, before the policy takes
        # effect: they are told too (invariant 9).
        policies.notify_newcomer(session, subscriber)
    return Registration(subscriber, created, states)


def deactivate(
    session: Session, subscriber: Subscriber, evidence: Evidence, reason: str = "by_user"
) -> None:
    """Opt out entirely: every marketing topic opted out, the account deactivated."""
    if subscriber.status != SubscriberStatus.ACTIVE:
        return
    consent.opt_out_of_all_marketing(session, subscriber, evidence)
    consent.account_event(
        session,
        subscriber,
        ConsentAction.DEACTIVATE,
        Evidence(**{**evidence.__dict__, "context": {"reason": reason}}),
    )


def erase(
    session: Session,
    subscriber: Subscriber,
    *,
    hash_key: str,
    actor: str,
    reason: str = "by_request",
) -> bool:
    """Erase a person's data; keep only the hash of the address on the suppression list.

    Returns False if they were already erased. The caller commits, then calls
    `Database.purge_erased()` so no old copy is left in the database files.
    """
    if subscriber.status == SubscriberStatus.ERASED:
        return False
    hashed = subscriber.email_hash or (
        address_hash(subscriber.email, hash_key) if subscriber.email else None
    )
    if hashed:
        suppression.add(
            session,
            hashed,
            SuppressionReason.UNDERAGE if reason == "underage" else SuppressionReason.ERASED,
            source="staff",
            actor=actor,
            evidence={"subscriber": subscriber.public_id},
            supersede=True,
        )
    consent.blank_personal_fields(session, subscriber.id, subscriber.email)
    consent.account_event(
        session,
        subscriber,
        ConsentAction.ERASE,
        Evidence(source="staff", actor=actor, context={"reason": reason}),
    )
    if subscriber.email:
        # Free text that may quote the address (relay answers, diagnostics, notes, audit
        # details, stored answers) is blanked or redacted everywhere.
        erasure.forget(session, subscriber.email, subscriber_id=subscriber.id, email_hash=hashed)
    subscriber.email = None
    subscriber.email_hash = None
    subscriber.attributes = {}
    audit.record(
        session,
        actor,
        "subscriber.erase",
        target_type="subscriber",
        target_id=subscriber.public_id,
        detail={"reason": reason},
    )
    session.flush()
    return True


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def export(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """Everything held about one person, consent events and mail sent included (with
    the policy version of each policy notice: who was sent which notice, and when)."""
    from mailprefs.domain.outbox_models import Campaign, CampaignKind

    deliveries = session.execute(
        select(Delivery, Campaign)
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(Delivery.subscriber_id == subscriber.id)
        .order_by(Delivery.id)
    ).all()
    suppressions = (
        suppression.history(session, subscriber.email_hash) if subscriber.email_hash else []
    )
    complaints = session.scalars(
        select(Complaint).where(Complaint.subscriber_id == subscriber.id).order_by(Complaint.id)
    ).all()
    bounces = session.scalars(
        select(BounceEvent)
        .where(BounceEvent.subscriber_id == subscriber.id)
        .order_by(BounceEvent.id)
    ).all()
    return {
        "id": subscriber.public_id,
        "email": subscriber.email,
        "status": subscriber.status.value,
        "status_reason": subscriber.status_reason,
        "attributes": subscriber.attributes,
        "created_at": _iso(subscriber.created_at),
        "updated_at": _iso(subscriber.updated_at),
        "topics": {k: v.value for k, v in consent.states(session, subscriber).items()},
        "consent_events": [event_json(e) for e in consent.history(session, subscriber)],
        "messages": [
            {
                "campaign": campaign.public_id,
                "kind": campaign.kind.value,
                "topic": campaign.topic.slug,
                "subject": campaign.subject,
                "status": delivery.status.value,
                "reason": delivery.reason,
                "sent_at": _iso(delivery.sent_at),
                "policy_version": (campaign.meta or {}).get("policy_version")
                if campaign.kind == CampaignKind.POLICY
                else None,
            }
            for delivery, campaign in deliveries
        ],
        "suppressions": [
            {
                "reason": s.reason.value,
                "source": s.source,
                "created_at": _iso(s.created_at),
                "lifted_at": _iso(s.lifted_at),
            }
            for s in suppressions
        ],
        "complaints": [
            {
                "id": c.public_id,
                "source": c.source,
                "status": c.status.value,
                "created_at": _iso(c.created_at),
            }
            for c in complaints
        ],
        "bounces": [
            {"kind": b.kind.value, "source": b.source, "occurred_at": _iso(b.occurred_at)}
            for b in bounces
        ],
    }


def event_json(event: consent.ConsentEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "topic": event.topic.slug if event.topic else None,
        "action": event.action.value,
        "source": event.source,
        "source_detail": event.source_detail,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "policy_version": event.policy_version,
        "actor": event.actor,
        "context": event.context,
        "at": _iso(event.occurred_at),
        "recorded_at": _iso(event.recorded_at),
    }
