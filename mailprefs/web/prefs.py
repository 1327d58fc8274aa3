"""Recipient pages (no login): one-click unsubscribe, preference center, confirmation.

The signed token in the URL is the only credential. A GET (or HEAD) never changes
anything, because mail scanners fetch every link they see; every change is a POST and
becomes a consent event carrying the request's IP and user agent. A bad, tampered,
expired or foreign token, or one for a person we no longer know, answers a plain
400/404 page and changes nothing.

The preference center lives in `prefs_center`; this module holds the shared helpers,
`/u/{token}` and `/confirm/{token}`.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, current_app, g, render_template, request, url_for
from sqlalchemy.orm import Session

from mailprefs import clock
from mailprefs.delivery.message import TEST_COPY_ID
from mailprefs.domain import confirmations, consent, links
from mailprefs.domain.addresses import mask
from mailprefs.domain.consent import Evidence
from mailprefs.domain.errors import Gone, NotFound
from mailprefs.domain.models import Subscriber, SubscriberStatus, TopicState
from mailprefs.domain.tokens import TokenExpired, TokenInvalid
from mailprefs.extensions import csrf, db_session, get_db, get_tokens, limiter

bp = Blueprint("prefs", __name__)

# No CSRF tokens here, deliberately. These pages have no login and set no cookie, so a
# forged cross-site request has no ambient authority to borrow: the signed token in the
# URL is the secret, and whoever can POST to the URL already holds it. RFC 8058 forbids
# asking more of the one-click POST (no cookie, no CSRF token, no redirect); the
# page's own forms follow the same rule so they work without cookies too.
csrf.exempt(bp)


@limiter.request_filter
def _no_rate_limits() -> bool:
    """No rate limits here: mailbox providers send one-click POSTs in bulk, from a few
    addresses, right after a campaign, and each must work the first time. A token cannot
    be guessed, so there is nothing to slow down. (A request filter, rather than
    `limiter.exempt`, lets the limiter skip these requests before doing any work.)"""
    return request.blueprint == "prefs"


# Who recorded a change made on these pages: the person, through a link we mailed them.
ACTOR = "recipient"
# Another confirmation mail is not queued sooner than this after the last one.
RESEND_INTERVAL = timedelta(minutes=10)

# Link tokens sit in the URL: never send them on as a Referer, never let a shared cache
# keep the page, never let another site frame the buttons. Nothing is loaded from
# elsewhere and no script runs.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}

# The keys each purpose's payload must hold (all strings); "c" (campaign) is optional.
REQUIRED_KEYS = {"unsubscribe": ("s", "t"), "preferences": ("s",), "confirm": ("s", "t")}


class LinkOfTestCopy(NotFound):
    """A link from a test copy of a campaign: it acts on nobody."""


# The answer to a mail client's one-click POST: no browser shows it, so it carries only
# what matters to any client (and each header costs: this is the bulk path).
MACHINE_HEADERS = [("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer")]


@bp.after_request
def _security_headers(response: Response) -> Response:
    if not getattr(response, "machine_answer", False):
        response.headers.update(SECURITY_HEADERS)
    return response


# --- helpers shared with prefs_center ---------------------------------------------------


def load_token(purpose: str, token: str) -> dict[str, Any]:
    """The token's payload, checked for shape; TokenInvalid / TokenExpired otherwise."""
    return _checked(purpose, get_tokens().load(purpose, token))


def _checked(purpose: str, payload: dict[str, Any]) -> dict[str, Any]:
    for key in REQUIRED_KEYS[purpose]:
        value = payload.get(key)
        if not isinstance(value, str) or not 0 < len(value) <= 64:
            raise TokenInvalid("malformed payload")
    campaign = payload.get("c")
    if campaign is not None and (not isinstance(campaign, str) or len(campaign) > 64):
        raise TokenInvalid("malformed payload")
    return payload


def find_subscriber(session: Session, public_id: str, *, for_update: bool = False) -> Subscriber:
    if public_id == TEST_COPY_ID:
        raise LinkOfTestCopy("this link comes from a test copy")
    return links.find_person(session, public_id, for_update=for_update)


marketing_topic = links.marketing_topic


def evidence(source: str, payload: dict[str, Any], **context: Any) -> Evidence:
    if payload.get("c"):
        context = {"campaign": payload["c"], **context}
    return Evidence(
        source=source,
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent") or None,
        actor=ACTOR,
        context=context or None,
    )


def page(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
    return render_template(template, **context), status


def problem(status: int, title: str, detail: str, **context: Any) -> tuple[str, int]:
    return page("errors/error.html", status, title=title, detail=detail, **context)


def preferences_url(public_id: str, campaign: str | None = None) -> str:
    # The mail that carried this link carried a preference link for the same person.
    return url_for("prefs.preferences", token=get_tokens().preferences(public_id, campaign))


def _rollback() -> None:
    session = g.get("mailprefs_session")
    if session is not None:
        session.rollback()


@bp.errorhandler(TokenInvalid)
def _bad_link(exc: TokenInvalid):
    _rollback()
    if isinstance(exc, TokenExpired):
        return problem(
            400,
            "This link has expired",
            "Links in our emails stop working after a while. Please use the link in a "
            "more recent email from us, or write to us and we will help.",
        )
    return problem(
        400,
        "This link is not valid",
        "The link may have been cut short or changed on its way here. Please open it "
        "again from the email, or copy the whole link into your browser.",
    )


@bp.errorhandler(NotFound)
def _unknown(exc: NotFound):
    _rollback()
    if isinstance(exc, LinkOfTestCopy):
        detail = "This link comes from a test copy of an email. It acts on nobody."
    elif isinstance(exc, Gone):
        detail = (
            "We no longer hold any data about this address, so there is nothing to change. "
            "We will not email it again."
        )
    else:
        detail = "We could not find what this link was for. Nothing was changed."
    return problem(404, "This link leads nowhere", detail)


# --- /u/{token}: one-click unsubscribe ---------------------------------------------------


@bp.get("/u/<token>")
def unsubscribe_page(token: str):
    """What the button will do. HEAD is answered from here too; neither changes anything."""
    payload = load_token("unsubscribe", token)
    with get_db().session(read_only=True) as session:
        subscriber = find_subscriber(session, payload["s"])
        topic = marketing_topic(session, payload["t"])
        state = consent.state_of(session, subscriber, topic)
        return page(
            "prefs/unsubscribe.html",
            topic=topic,
            address=mask(subscriber.email),
            already=state == TopicState.OPTED_OUT,
            closed=subscriber.status != SubscriberStatus.ACTIVE,
            preferences_url=preferences_url(payload["s"], payload.get("c")),
        )


@bp.post("/u/<token>")
def unsubscribe_post(token: str):
    """RFC 8058 one-click (or the page's button): opt out of the mail's topic; 200."""
    payload = load_token("unsubscribe", token)
    # Mail clients send exactly this body (RFC 8058); anything else is parsed as a form.
    if (
        request.get_data(cache=True) == b"List-Unsubscribe=One-Click"
        or request.form.get("List-Unsubscribe") == "One-Click"
    ):
        source = "one_click"
    elif request.form.get("unsubscribe") == "yes":
        source = "unsubscribe_page"
    else:
        # Not a mail client's one-click nor our button: say what to do, change nothing.
        return problem(
            400,
            "Nothing was changed",
            "This request did not ask to unsubscribe. Open the link from the email and "
            "press the button.",
        )
    if payload["s"] == TEST_COPY_ID:
        raise LinkOfTestCopy("this link comes from a test copy")
    proof = evidence(source, payload)
    # A bare connection, not the ORM session: this is the one path mail clients call in
    # bulk, and the write lock is held for as short a time as possible.
    with get_db().engine.begin() as connection:
        done = links.opt_out(connection, payload["s"], payload["t"], proof)
    if source == "one_click":
        config = current_app.config
        response = Response(
            _one_click_answer(
                done.topic_name,
                done.changed,
                config["MAILPREFS_ORG_NAME"],
                config["MAILPREFS_POSTAL_ADDRESS"],
                config["MAILPREFS_PRIVACY_POLICY_URL"],
            ),
            headers=MACHINE_HEADERS,
            mimetype="text/html",
        )
        response.machine_answer = True
        return response
    return page(
        "prefs/unsubscribed.html",
        topic_name=done.topic_name,
        address=mask(done.email),
        changed=done.changed,
        preferences_url=preferences_url(payload["s"], payload.get("c")),
        resubscribe_url=url_for("prefs.resubscribe", token=token),
    )


@functools.lru_cache(maxsize=256)
def _one_click_answer(
    topic_name: str, changed: bool, org_name: str, postal_address: str, privacy_url: str
) -> str:
    """The short page a mail client's POST gets: the same few bodies over and over, so
    rendered once each (without the context processors: no login lookup)."""
    return current_app.jinja_env.get_template("prefs/one_click.html").render(
        topic_name=topic_name,
        changed=changed,
        org_name=org_name,
        postal_address=postal_address,
        privacy_url=privacy_url,
    )


# --- /confirm/{token}: double opt-in -----------------------------------------------------


@bp.get("/confirm/<token>")
def confirm_page(token: str):
    try:
        payload = load_token("confirm", token)
    except TokenExpired as exc:
        return _expired_confirmation(token, _checked("confirm", exc.payload))
    with get_db().session(read_only=True) as session:
        subscriber = find_subscriber(session, payload["s"])
        topic = marketing_topic(session, payload["t"], active_only=True)
        return page(
            "prefs/confirm.html",
            topic=topic,
            address=mask(subscriber.email),
            state=consent.state_of(session, subscriber, topic).value,
            closed=subscriber.status != SubscriberStatus.ACTIVE,
            preferences_url=preferences_url(payload["s"]),
        )


@bp.post("/confirm/<token>")
def confirm_post(token: str):
    try:
        payload = load_token("confirm", token)
    except TokenExpired as exc:
        payload = _checked("confirm", exc.payload)
        if request.form.get("resend") == "yes":
            return _resend(payload)
        return _expired_confirmation(token, payload)
    session = db_session()
    subscriber = find_subscriber(session, payload["s"], for_update=True)
    topic = marketing_topic(session, payload["t"], active_only=True)
    context = dict(
        topic=topic,
        address=mask(subscriber.email),
        preferences_url=preferences_url(payload["s"]),
    )
    if subscriber.status != SubscriberStatus.ACTIVE:
        return page("prefs/confirm.html", 409, state="closed", closed=True, **context)
    state = consent.state_of(session, subscriber, topic)
    if state == TopicState.OPTED_IN:
        return page("prefs/confirmed.html", changed=False, **context)
    if state != TopicState.PENDING:
        # Unsubscribed (or never asked) since the mail was sent: nothing to confirm.
        return page("prefs/confirm.html", 409, state=state.value, closed=False, **context)
    consent.confirm(session, subscriber, topic, evidence("confirmation", payload))
    session.commit()
    return page("prefs/confirmed.html", changed=True, **context)


def _expired_confirmation(token: str, payload: dict[str, Any]):
    """An expired link: offer a new one, if the subscription still waits for it."""
    with get_db().session(read_only=True) as session:
        subscriber = find_subscriber(session, payload["s"])
        topic = marketing_topic(session, payload["t"], active_only=True)
        state = consent.state_of(session, subscriber, topic)
        return page(
            "prefs/confirm_expired.html",
            400,
            topic=topic,
            address=mask(subscriber.email),
            can_resend=state == TopicState.PENDING and subscriber.status == SubscriberStatus.ACTIVE,
            state=state.value,
            hours=current_app.config["MAILPREFS_CONFIRM_MAX_AGE_HOURS"],
            token=token,
        )


def _resend(payload: dict[str, Any]):
    session = db_session()
    subscriber = find_subscriber(session, payload["s"], for_update=True)
    topic = marketing_topic(session, payload["t"], active_only=True)
    state = consent.state_of(session, subscriber, topic)
    context = dict(
        topic=topic,
        address=mask(subscriber.email),
        hours=current_app.config["MAILPREFS_CONFIRM_MAX_AGE_HOURS"],
    )
    if state != TopicState.PENDING or subscriber.status != SubscriberStatus.ACTIVE:
        return page("prefs/resent.html", 409, sent=False, waiting=False, **context)
    if confirmations.requested_since(session, subscriber, topic, clock.now() - RESEND_INTERVAL):
        return page("prefs/resent.html", sent=False, waiting=True, **context)
    confirmations.request(session, subscriber, topic, ACTOR)
    session.commit()
    return page("prefs/resent.html", sent=True, waiting=False, **context)


from mailprefs.web import prefs_center, prefs_resubscribe  # noqa: E402,F401  (routes on bp)
