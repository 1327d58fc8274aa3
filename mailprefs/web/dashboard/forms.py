"""Dashboard forms (Flask-WTF): every one carries a CSRF token."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    DateTimeLocalField,
    PasswordField,
    RadioField,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import DataRequired, InputRequired, Length, Optional, Regexp

NO_CONTROL = Regexp(r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$", message="no control characters")


class LoginForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=320), NO_CONTROL])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=1024)])


class ActionForm(FlaskForm):
    """A button: nothing but the CSRF token (pause, resume, cancel, run now, log out)."""


class AddressForm(FlaskForm):
    email = StringField("Address", validators=[DataRequired(), Length(max=320), NO_CONTROL])


class AddSuppressionForm(FlaskForm):
    email = StringField("Address", validators=[DataRequired(), Length(max=320), NO_CONTROL])
    note = TextAreaField("Why", validators=[DataRequired(), Length(max=1000), NO_CONTROL])


class LiftForm(FlaskForm):
    reason = TextAreaField(
        "Why may this address be mailed again?",
        validators=[DataRequired(), Length(max=2000), NO_CONTROL],
    )


class ResolveForm(FlaskForm):
    resolution = TextAreaField(
        "Resolution", validators=[DataRequired(), Length(max=5000), NO_CONTROL]
    )


class ApiKeyForm(FlaskForm):
    role = SelectField("Role", choices=["marketing", "ops", "transactional", "admin"])
    name = StringField("Name", validators=[DataRequired(), Length(max=200), NO_CONTROL])


class UserForm(FlaskForm):
    email = StringField("Email", validators=[DataRequired(), Length(max=320), NO_CONTROL])
    role = SelectField("Role", choices=["marketing", "ops", "admin"])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=12, max=1024)])


def _strip(value: str | None) -> str | None:
    return value.strip() if isinstance(value, str) else value


# Minutes first: the format a datetime-local input shows; seconds accepted too.
LOCAL_TIME = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S"]


class PolicyForm(FlaskForm):
    """A policy version and its notice: the fields of `POST /api/v1/policies`, with the
    API's limits. Times are UTC (the dashboard shows every time in UTC); the domain
    checks the notice period, the order of versions and a known version."""

    version = StringField(
        "Version",
        filters=[_strip],
        validators=[
            DataRequired(),
            Regexp(
                r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                message="letters, digits, dots, dashes and underscores (up to 64), "
                "starting with a letter or digit",
            ),
        ],
    )
    title = StringField(
        "Title",
        filters=[_strip],
        validators=[
            DataRequired(),
            Length(max=200),
            Regexp(r"^[^\x00-\x1f\x7f]*$", message="one line, no control characters"),
        ],
    )
    summary = TextAreaField(
        "Summary",
        validators=[DataRequired(), Length(max=20_000), NO_CONTROL],
    )
    url = StringField(
        "Where the new policy is published",
        filters=[_strip],
        validators=[
            DataRequired(),
            Length(max=2000),
            Regexp(r"^https?://[^\s\x00-\x1f\x7f]+$", message="must be an http(s) URL"),
        ],
    )
    effective_at = DateTimeLocalField(
        "Takes effect (UTC)", format=LOCAL_TIME, validators=[InputRequired()]
    )
    announce_at = DateTimeLocalField(
        "Announce at (UTC; leave empty to announce now)",
        format=LOCAL_TIME,
        validators=[Optional()],
    )
    # Plain values (the template words them): (value, label) pairs are deprecated in
    # WTForms 3.3, and its SelectChoice does not exist before it.
    kind = RadioField("Kind", choices=["change", "transfer"], default="change")
