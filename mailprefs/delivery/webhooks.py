"""Sending outgoing webhooks: claim due deliveries, sign, POST, record the answer.

Claiming is one short statement that leases pending rows (PostgreSQL: `FOR UPDATE SKIP
LOCKED`), skipping any row behind an earlier pending row of the same person at the same
endpoint: so each endpoint hears of a person's changes in the order they happened, and
one person's failing event holds back only that person's later ones. The HTTP requests
run outside any transaction, one thread per endpoint, each with a timeout: a receiver
that hangs costs its own thread one timeout per round, never another endpoint's turn.
After a connection error or a timeout, the rest of that endpoint's round waits.

A delivery that fails is retried with exponential backoff until 24 hours after it was
written (its `retry_until`), then marked failed; the dashboard can replay it. Delivery is
at least once: a worker that dies after the POST and before recording it sends it again
when the lease runs out, so receivers deduplicate on the event id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import urllib.error
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from mailprefs import clock
from mailprefs.db import Database
from mailprefs.domain.models import Subscriber, SubscriberStatus
from mailprefs.domain.webhook_models import (
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEvent,
)

SIGNATURE_HEADER = "Mailprefs-Signature"
MAX_PARALLEL = 8
MAX_ERROR = 500
USER_AGENT = "mailprefs-webhooks/1"

_d = WebhookDelivery.__table__
_earlier = _d.alias("earlier")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """`t=UNIX,v1=HEX(HMAC-SHA256(secret, "t.body"))`: the Mailprefs-Signature header."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new destination: we sign for the registered URL."""

    def redirect_request(self, *_args: Any, **_kwargs: Any) -> None:
        return None


# No proxies from the environment, no redirects.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects)


@dataclass(frozen=True)
class Attempt:
    delivery_id: int
    endpoint_id: int
    url: str
    secret: str
    body: bytes
    attempts: int
    retry_until: datetime


@dataclass(frozen=True)
class Result:
    attempt: Attempt
    status: int | None  # the HTTP status, None when no answer came
    error: str | None  # None: delivered

    @property
    def unreachable(self) -> bool:
        return self.status is None


def body_of(event: WebhookEvent, email: str | None) -> bytes:
    data = dict(event.data)
    if email is not None:
        data["email"] = email
    payload = {
        "id": event.public_id,
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "data": data,
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


@dataclass
class WebhookSender:
    db: Database
    owner: str
    timeout: float = 10.0
    batch: int = 100
    lease: timedelta = timedelta(seconds=120)
    retry_base: float = 30.0
    retry_max: float = 3600.0

    @classmethod
    def from_config(cls, db: Database, config: Any, owner: str) -> WebhookSender:
        timeout = config["MAILPREFS_WEBHOOK_TIMEOUT_SECONDS"]
        return cls(
            db=db,
            owner=owner,
            timeout=timeout,
            # Long enough for a round in which every request times out.
            lease=timedelta(seconds=max(120.0, timeout * 4)),
            retry_base=config["MAILPREFS_WEBHOOK_RETRY_BASE_SECONDS"],
            retry_max=config["MAILPREFS_WEBHOOK_RETRY_MAX_SECONDS"],
        )

    def run_once(self) -> int:
        """One round: claim, send, record. Returns how many requests were made."""
        attempts = self._claim()
        if not attempts:
            return 0
        by_endpoint: dict[int, list[Attempt]] = defaultdict(list)
        for attempt in attempts:
            by_endpoint[attempt.endpoint_id].append(attempt)
        workers = min(len(by_endpoint), MAX_PARALLEL)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="webhook") as pool:
            rounds = list(pool.map(self._send_in_order, by_endpoint.values()))
        results = [r for done, _rest in rounds for r in done]
        untried = [a.delivery_id for _done, rest in rounds for a in rest]
        self._record(results, untried)
        return len(results)

    def drain(self, max_rounds: int = 100) -> int:
        """Rounds until nothing is due (failures wait for their backoff)."""
        total = 0
        for _ in range(max_rounds):
            sent = self.run_once()
            if sent == 0:
                break
            total += sent
        return total

    # --- the steps ---------------------------------------------------------------------

    def _claim(self) -> list[Attempt]:
        now = clock.now()
        behind_earlier = (
            select(_earlier.c.id)
            .where(
                _earlier.c.endpoint_id == _d.c.endpoint_id,
                _earlier.c.ordering_key == _d.c.ordering_key,
                _earlier.c.id < _d.c.id,
                _earlier.c.status == WebhookDeliveryStatus.PENDING.value,
            )
            .exists()
        )
        candidates = (
            select(_d.c.id)
            .where(
                _d.c.status == WebhookDeliveryStatus.PENDING.value,
                _d.c.next_attempt_at <= now,
                or_(_d.c.lease_until.is_(None), _d.c.lease_until < now),
                ~behind_earlier,
            )
            .order_by(_d.c.id)
            .limit(self.batch)
            .with_for_update(skip_locked=True)
        )
        with self.db.transaction() as session:
            ids = session.scalars(
                update(_d)
                .where(_d.c.id.in_(candidates.scalar_subquery()))
                .values(lease_owner=self.owner, lease_until=now + self.lease)
                .returning(_d.c.id)
            ).all()
            if not ids:
                return []
            rows = session.execute(
                select(WebhookDelivery, WebhookEvent, WebhookEndpoint)
                .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(WebhookDelivery.id.in_(ids))
                .order_by(WebhookDelivery.id)
            ).all()
            emails = self._emails(session, [(e, ep) for _d, e, ep in rows])
            return [
                Attempt(
                    delivery_id=d.id,
                    endpoint_id=ep.id,
                    url=ep.url,
                    secret=ep.secret,
                    body=body_of(
                        e, emails.get(e.data.get("subscriber")) if ep.include_email else None
                    ),
                    attempts=d.attempts,
                    retry_until=d.retry_until,
                )
                for d, e, ep in rows
            ]

    @staticmethod
    def _emails(session: Any, pairs: list[tuple[WebhookEvent, WebhookEndpoint]]) -> dict:
        """Addresses for endpoints registered with include_email, read now: an erased
        person has none, and an erasure event never carries one."""
        wanted = {
            e.data.get("subscriber")
            for e, ep in pairs
            if ep.include_email and e.type != "subscriber.erased" and e.data.get("subscriber")
        }
        if not wanted:
            return {}
        return dict(
            session.execute(
                select(Subscriber.public_id, Subscriber.email).where(
                    Subscriber.public_id.in_(wanted),
                    Subscriber.status != SubscriberStatus.ERASED,
                    Subscriber.email.is_not(None),
                )
            ).all()
        )

    def _send_in_order(self, attempts: list[Attempt]) -> tuple[list[Result], list[Attempt]]:
        """One endpoint's share, in order; after an unreachable answer the rest waits."""
        done: list[Result] = []
        for index, attempt in enumerate(attempts):
            result = self._post(attempt)
            done.append(result)
            if result.unreachable:
                return done, attempts[index + 1 :]
        return done, []

    def _post(self, attempt: Attempt) -> Result:
        stamp = int(clock.now().timestamp())
        if not attempt.url.startswith(("https://", "http://")):
            return Result(attempt, None, "not an http(s) URL")
        # The scheme is checked just above, and the URL was checked at registration.
        request = urllib.request.Request(  # noqa: S310
            attempt.url,
            data=attempt.body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                SIGNATURE_HEADER: sign(attempt.secret, stamp, attempt.body),
            },
        )
        try:
            with _opener.open(request, timeout=self.timeout) as response:
                response.read(4096)
                return Result(attempt, response.status, None)
        except urllib.error.HTTPError as exc:
            return Result(attempt, exc.code, f"HTTP {exc.code} {exc.reason}"[:MAX_ERROR])
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return Result(attempt, None, f"no answer: {reason}"[:MAX_ERROR])

    def _record(self, results: list[Result], untried: list[int]) -> None:
        now = clock.now()
        with self.db.transaction() as session:
            for result in results:
                attempt = result.attempt
                values: dict[str, Any] = {
                    "attempts": attempt.attempts + 1,
                    "last_status": result.status,
                    "last_error": result.error,
                    "last_attempt_at": now,
                    "lease_owner": None,
                    "lease_until": None,
                }
                if result.error is None:
                    values.update(status=WebhookDeliveryStatus.DELIVERED, delivered_at=now)
                elif now >= attempt.retry_until:
                    values.update(status=WebhookDeliveryStatus.FAILED)
                else:
                    values.update(next_attempt_at=now + self._delay(attempt.attempts + 1))
                session.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id == attempt.delivery_id,
                        WebhookDelivery.lease_owner == self.owner,
                    )
                    .values(**values)
                )
            if untried:
                session.execute(
                    update(WebhookDelivery)
                    .where(
                        WebhookDelivery.id.in_(untried),
                        WebhookDelivery.lease_owner == self.owner,
                    )
                    .values(lease_owner=None, lease_until=None)
                )

    def _delay(self, attempts: int) -> timedelta:
        seconds = min(self.retry_base * 2 ** max(attempts - 1, 0), self.retry_max)
        return timedelta(seconds=seconds * random.uniform(0.8, 1.2))
