"""Dashboard forms (Flask-WTF): every one carries a CSRF token."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Regexp

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
    role = SelectField("Role", choices=["ops", "admin"])
    password = PasswordField("Password", validators=[DataRequired(), Length(min=12, max=1024)])
