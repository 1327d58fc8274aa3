"""Stable codes (gate reasons, consent and complaint sources, suppression reasons) in the
words a person reads on the dashboard. The codes stay in the API and the database; the
pages say what they mean. Unknown codes are shown as they are, never hidden."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

REASONS = {
    "no_consent": "never opted in",
    "pending_confirmation": "opt-in not confirmed yet",
    "opted_out": "opted out",
    "deactivated": "closed their account",
    "erased": "erased at their request",
    "suppressed_bounce": "address bounced",
    "suppressed_complaint": "complained",
    "underage": "under 13 (erased)",
    "unknown_recipient": "no longer known",
}

SOURCES = {
    "api": "through the API",
    "import": "an import",
    "web_form": "a web form",
    "preference_page": "the preference page",
    "preferences": "the preference page",
    "one_click": "a one-click unsubscribe",
    "confirmation": "a confirmation link",
    "complaint": "a complaint",
    "arf": "a mailbox provider's spam report",
    "bounce": "a bounce",
    "dsn": "a bounce report",
    "staff": "staff",
    "demo": "demo data",
}

SUPPRESSIONS = {
    "bounce": "the address bounced",
    "complaint": "the person complained",
    "unsubscribe": "unsubscribed",
    "manual": "suppressed by staff",
    "erased": "erased",
    "underage": "erased: under 13",
}


def _say(table: Mapping[str, str], code: str | None) -> str:
    """`code` in the words of `table`; an unknown code as it is, no code as a dash."""
    return table.get(code or "", code or "—")


reason = partial(_say, REASONS)
source = partial(_say, SOURCES)
suppression = partial(_say, SUPPRESSIONS)


ACTIONS = {
    "opt_in": "opted in",
    "confirm": "confirmed the opt-in",
    "opt_out": "opted out",
    "deactivate": "closed the account",
    "reactivate": "registered again",
    "erase": "erased",
}

STATES = {
    "none": "not subscribed",
    "pending": "waiting for confirmation",
    "opted_in": "subscribed",
    "opted_out": "opted out",
}

COMPLAINT_SOURCES = {
    "preference_page": "the preference page",
    "arf": "a mailbox provider's spam report",
    "json": "the events API",
    "staff": "staff",
}


action = partial(_say, ACTIONS)


def topic_state(topic: Any, state: str, person_status: str) -> str:
    """A person's state on a topic in words. Administrative mail needs no opt-in: a
    registered, active person receives it whatever the ledger holds ("none")."""
    if getattr(topic.kind, "value", topic.kind) == "administrative":
        if person_status == "active":
            return "receives it (administrative mail: no opt-in, cannot be opted out of)"
        return f"receives none (account {person_status})"
    return STATES.get(state, state)


def subject(source: str, attributes: Mapping[str, Any] | None = None) -> str:
    """A campaign's subject as a reader sees it: rendered for this person's attributes,
    or, without a person, with each placeholder shown as `[name]` (never `{{ name }}`)."""
    from mailprefs.domain.templating import (
        RESERVED_NAMES,
        TemplateInvalid,
        compile_templates,
        make_context,
        placeholder_attributes,
    )

    shown = attributes if attributes is not None else placeholder_attributes(source, "")
    reserved = {name: f"[{name}]" for name in RESERVED_NAMES}
    try:
        return compile_templates(source, "", None).subject.render(make_context(shown, reserved))
    except (TemplateInvalid, ValueError):
        return source
