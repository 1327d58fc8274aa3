"""The ops dashboard (staff login) under /dashboard."""

from __future__ import annotations

from flask import Blueprint

from mailprefs.domain.models import User
from mailprefs.extensions import db_session, login_manager

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    if not user_id.isdigit():
        return None
    user = db_session().get(User, int(user_id))
    return user if user is not None and user.active else None
