"""What every recipient page shares: the blueprint, its headers and error pages, and
the helpers that read a link's token and record a change's evidence."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, g, render_template, request, url_for
from sqlalchemy.orm import Session

from mailprefs.delivery.message import TEST_COPY_ID
from mailprefs.domain import consent, links
from mailprefs.domain.consent import Evidence
from mailprefs.domain.errors import Gone, NotFound
from mailprefs.domain.models import Subscriber, Topic, TopicState
from mailprefs.domain.tokens import TOPIC_LIST_MAX, TokenExpired, TokenInvalid
from mailprefs.extensions import csrf, get_tokens, limiter

bp = Blueprint("prefs", __name__)

# No CSRF tokens here, deliberately. These pages have no login and set no cookie, so a
# forged cross-site request has no ambient authority to borrow: the signed token in the
# URL is the secret, and whoever can POST to the URL already holds it. RFC 8058 forbids
# asking more of the one-click POST (no cookie, no CSRF token, no redirect); the
# page's own forms follow the same rule so they work without cookies too.
csrf.exempt(bp)


# No rate limits here: mailbox providers send one-click POSTs in bulk, from a few
# addresses, right after a campaign, and each must work the first time. A token cannot
# be guessed, so there is nothing to slow down.
limiter.unlimited.add(bp.name)


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
REQUIRED_KEYS = {
    "unsubscribe": ("s", "t"),
    "preferences": ("s",),
    "confirm": ("s", "t"),
    "reactivate": ("s", "t"),
}


class LinkOfTestCopy(NotFound):
    """A link from a test copy of a campaign: it acts on nobody."""


class NothingAsked(Exception):
    """A POST that did not ask for the page's change (neither its button nor a mail
    client's one-click): the answer says what to do, and nothing is changed."""


# The answer to a mail client's one-click POST: no browser shows it, so it carries only
# what matters to any client (and each header costs: this is the bulk path).
MACHINE_HEADERS = [("Cache-Control", "no-store"), ("Referrer-Policy", "no-referrer")]


@bp.after_request
def _security_headers(response: Response) -> Response:
    if not getattr(response, "machine_answer", False):
        response.headers.update(SECURITY_HEADERS)
    return response


# --- helpers shared by the pages ---------------------------------------------------------


def load_token(purpose: str, token: str) -> dict[str, Any]:
    """The token's payload, checked for shape; TokenInvalid / TokenExpired otherwise."""
    return checked(purpose, get_tokens().load(purpose, token))


def checked(purpose: str, payload: dict[str, Any]) -> dict[str, Any]:
    for key in REQUIRED_KEYS[purpose]:
        value = payload.get(key)
        # A reactivation link names a list of topics; every other value is one id.
        longest = TOPIC_LIST_MAX if (purpose, key) == ("reactivate", "t") else 64
        if not isinstance(value, str) or not 0 < len(value) <= longest:
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
        # The page itself (its rule, never the token in the path) names where consent changed.
        source_detail=f"{request.method} {request.url_rule.rule}" if request.url_rule else None,
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent") or None,
        actor=ACTOR,
        context=context or None,
    )


def require_button(name: str, detail: str) -> None:
    """A page's own button posts `name=yes`; without it, NothingAsked (`detail` says what
    to do instead)."""
    if request.form.get(name) != "yes":
        raise NothingAsked(detail)


# The pages that opt a person in from a mailed link, and the link each one proves.
LINK_PROOFS = {"preference_page": "preference link", "unsubscribe_page": "unsubscribe link"}


def opt_in_by_link(
    session: Session,
    subscriber: Subscriber,
    topic: Topic,
    state: TopicState,
    payload: dict[str, Any],
    *,
    source: str,
) -> None:
    """Opt in (again) from a page reached by a mailed link. The link was mailed to the
    address, which is the proof a confirmation mail would ask for, so a double opt-in
    topic is confirmed at once; a pending one only gets that confirmation."""
    if state != TopicState.PENDING:
        consent.opt_in(session, subscriber, topic, evidence(source, payload))
    if topic.double_opt_in:
        proof = LINK_PROOFS[source]
        consent.confirm(session, subscriber, topic, evidence(source, payload, proof=proof))


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


@bp.errorhandler(NothingAsked)
def _nothing_asked(exc: NothingAsked):
    _rollback()
    return problem(400, "Nothing was changed", str(exc))


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
