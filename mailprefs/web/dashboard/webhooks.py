"""Outgoing webhooks on the dashboard: the endpoints, recent deliveries and failures, and
replaying one delivery (audited). Registering an endpoint is the admin API's."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from mailprefs.domain import webhooks as rules
from mailprefs.domain.errors import Invalid
from mailprefs.domain.webhook_models import (
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from mailprefs.extensions import db_session
from mailprefs.web.dashboard import bp
from mailprefs.web.dashboard.common import actor
from mailprefs.web.dashboard.forms import ActionForm

RECENT = 50


def _deliveries(*conditions) -> list[WebhookDelivery]:
    return list(
        db_session().scalars(
            select(WebhookDelivery)
            .options(joinedload(WebhookDelivery.event), joinedload(WebhookDelivery.endpoint))
            .where(*conditions)
            .order_by(WebhookDelivery.id.desc())
            .limit(RECENT)
        )
    )


@bp.get("/webhooks")
def webhooks():
    db = db_session()
    endpoints = list(db.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))
    return render_template(
        "dashboard/webhooks.html",
        endpoints=endpoints,
        recent=_deliveries(),
        failures=_deliveries(WebhookDelivery.status == WebhookDeliveryStatus.FAILED),
        failing=_deliveries(
            WebhookDelivery.status == WebhookDeliveryStatus.PENDING,
            WebhookDelivery.attempts > 0,
        ),
        form=ActionForm(),
    )


@bp.post("/webhooks/deliveries/<int:delivery_id>/replay")
def replay_webhook(delivery_id: int):
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400, "The form expired; reload the page and try again.")
    db = db_session()
    row = db.get(WebhookDelivery, delivery_id)
    if row is None:
        abort(404)
    if row.status == WebhookDeliveryStatus.PENDING:
        flash("This delivery is still being tried; nothing to replay.", "error")
    else:
        try:
            rules.replay(db, row, actor())
            db.commit()
            flash(f"Event {row.event.public_id} will be sent again to {row.endpoint.url}.")
        except Invalid as exc:
            db.rollback()
            flash(exc.detail, "error")
    return redirect(url_for("dashboard.webhooks"))
