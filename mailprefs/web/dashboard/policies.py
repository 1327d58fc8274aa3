"""Policy announcements: record a policy change or a transfer of data and schedule its
notice, through `policies.announce`, the function `POST /api/v1/policies` uses.

Two steps. The first post (preview) checks the form, runs the domain's own checks
(a known version, the notice period, the order of versions) in a transaction that is
rolled back, and shows who the notice would reach now (`audience_counts` on the policy
topic) with a confirm button carrying the same values. The second post announces it.
Errors are shown beside their fields and nothing is kept. `announce` writes the audit
entries (`policy.announce`, `campaign.schedule`) under the logged-in user.
"""

from __future__ import annotations

from datetime import UTC

from flask import current_app, flash, redirect, render_template, request, url_for
from sqlalchemy.exc import IntegrityError

from mailprefs.domain import campaigns
from mailprefs.domain import policies as rules
from mailprefs.domain.errors import Conflict, Invalid
from mailprefs.domain.outbox_models import PolicyKind
from mailprefs.domain.topics import get_topic
from mailprefs.extensions import db_session
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.common import actor
from mailprefs.web.dashboard.forms import PolicyForm
from mailprefs.web.dashboard.metrics import progress

FIELDS = ("version", "title", "summary", "url", "effective_at", "announce_at", "kind")
# What each reason the gate gives for administrative mail means, for the preview.
WHY_NOT = {
    "deactivated": "deactivated their account",
    "erased": "erased at their request",
    "underage": "erased: under 13",
    "suppressed_bounce": "address bounced",
    "unknown_recipient": "no longer known",
}


def _settings() -> rules.NoticeSettings:
    config = current_app.config
    return rules.NoticeSettings(
        notice_days=config["MAILPREFS_POLICY_NOTICE_DAYS"],
        org_name=config["MAILPREFS_ORG_NAME"],
        contact_email=config["MAILPREFS_CONTACT_EMAIL"],
    )


def _announcement(form: PolicyForm) -> rules.Announcement:
    # The form's times are UTC, as every time on the dashboard.
    announce_at = form.announce_at.data
    return rules.Announcement(
        version=form.version.data,
        title=form.title.data,
        summary=form.summary.data,
        url=form.url.data,
        effective_at=form.effective_at.data.replace(tzinfo=UTC),
        announce_at=announce_at.replace(tzinfo=UTC) if announce_at else None,
        kind=PolicyKind(form.kind.data),
    )


def _announce(form: PolicyForm):
    """Announce in the request's session (not committed here); None after putting the
    domain's refusal beside the field it names."""
    try:
        return rules.announce(db_session(), _announcement(form), _settings(), actor())
    except Conflict as exc:
        form.version.errors.append(exc.detail)
    except IntegrityError:
        # The same version announced by another request since the check (a double click
        # on confirm, on PostgreSQL): the unique version refused the second.
        form.version.errors.append(f"policy version {form.version.data!r} exists already")
    except Invalid as exc:
        for error in exc.errors or [{"field": "", "detail": exc.detail}]:
            field = getattr(form, error["field"], None) if error["field"] in FIELDS else None
            (field.errors if field is not None else form.form_errors).append(error["detail"])
    return None


def _versions() -> list[dict]:
    db = db_session()
    in_force = rules.in_force(db)
    return [
        {
            "policy": p,
            "in_force": p.version == in_force,
            "progress": progress(db, p.campaign) if p.campaign is not None else None,
        }
        for p in rules.list_versions(db)
    ]


def _page(form: PolicyForm):
    return render_template(
        "dashboard/policies.html",
        form=form,
        versions=_versions(),
        notice_days=current_app.config["MAILPREFS_POLICY_NOTICE_DAYS"],
    )


@bp.get("/policies", endpoint="policies")
def policy_list():
    return _page(PolicyForm())


@bp.post("/policies/preview", endpoint="policies_preview")
def policy_preview():
    form = PolicyForm()
    db = db_session()
    if not form.validate_on_submit():
        return _page(form)
    # A dry run of the domain's checks: announce, then roll back; nothing is kept.
    dry_run = _announce(form)
    db.rollback()
    if dry_run is None:
        return _page(form)
    counts = campaigns.audience_counts(db, get_topic(db, rules.TOPIC), None)
    return render_template(
        "dashboard/policies_preview.html",
        form=form,
        announcement=_announcement(form),
        counts=counts,
        why_not=WHY_NOT,
        # The values exactly as posted, for the confirm button to post again.
        carried=[(name, request.form.get(name, "")) for name in FIELDS],
        notice_days=current_app.config["MAILPREFS_POLICY_NOTICE_DAYS"],
    )


@bp.post("/policies", endpoint="policies_create")
def policy_create():
    form = PolicyForm()
    db = db_session()
    if not form.validate_on_submit():
        return _page(form)
    policy = _announce(form)
    if policy is None:
        db.rollback()
        return _page(form)
    version, announce_at = policy.version, policy.announce_at
    db.commit()
    flash(
        f"Version {version} is announced: its notice goes out "
        f"{announce_at:%Y-%m-%d %H:%M} UTC to every registered, active person."
    )
    return redirect(url_for("dashboard.policies", _anchor=f"policy-{version}"))
