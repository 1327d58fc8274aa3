"""Recipient pages (no login): one-click unsubscribe, preference center, confirmation."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("prefs", __name__)
