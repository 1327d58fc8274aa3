"""Mail templates: our own (footers, policy notices) and campaigns' (in the sandbox).

Our own files under `templates/email` are trusted: `mail_environment()` loads them, with
StrictUndefined so a typo fails loudly. Everything below it is about campaign templates:
subject, text and HTML compiled once per campaign and rendered per recipient in the
bounded sandbox of `mailprefs.domain.sandbox`, so a bad template is refused when it is
submitted (`validate`), not when the first recipient's message is built.

Each field is compiled once per campaign; a field that uses no variables is rendered
once and its string reused (most subjects and many bodies are the same for everyone).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    select_autoescape,
)
from jinja2 import nodes as jnodes
from jinja2.sandbox import SecurityError
from markupsafe import escape

from mailprefs.config import TEMPLATES_DIR
from mailprefs.domain.sandbox import (
    LOOP_COUNTER,
    Sandbox,
    TemplateInvalid,
    count_loop_items,
    new_sandbox,
    refuse_unsafe_nodes,
    render_bounded,
)

FIELDS = ("subject", "text", "html")

# Names the service fills in for every recipient; they override attributes of the same
# name, so a subscriber attribute can never forge an unsubscribe link.
RESERVED_NAMES = (
    "email",
    "subscriber_id",
    "unsubscribe_url",
    "preferences_url",
    "confirm_url",
    "org_name",
    "postal_address",
    "topic_name",
)

# Every character Python treats as whitespace or a line break (CR, LF, VT, FF, FS/GS/RS,
# NEL U+0085, U+2028, U+2029 ...) and the other C0/C1 controls (NUL, ESC ...): none may
# reach a header, so a rendered subject folds them all into single spaces.
_NOT_ONE_LINE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")
_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")

_TOO_DEEP = "nested too deeply (parentheses, blocks or filters): flatten the template"


@functools.cache
def mail_environment() -> Environment:
    """The one environment for our own mail templates: no sandbox (we wrote them)."""
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR / "email")),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def one_line(value: str) -> str:
    """Fold every whitespace and control character run into one space (for headers)."""
    return _NOT_ONE_LINE.sub(" ", value).strip()


# A mail-merge template (text and `{{ name }}` or `{{ name|default("...") }}`, nothing
# else) is by far the most common kind; rendering it without Jinja's context machinery
# costs a tenth. The output is the same as Jinja's (a test holds the two together).
_MISSING = object()
_NOT_MERGE_NAMES = frozenset({"self", "loop", "caller", "varargs", "kwargs"})


def _merge_pieces(tree: jnodes.Template, env: Sandbox) -> list[tuple[Any, ...]] | None:
    if not tree.body:
        return []
    if len(tree.body) != 1 or not isinstance(tree.body[0], jnodes.Output):
        return None
    pieces: list[tuple[Any, ...]] = []
    for node in tree.body[0].nodes:
        default: Any = ""
        if isinstance(node, jnodes.TemplateData):
            pieces.append((node.data,))
            continue
        if (
            isinstance(node, jnodes.Filter)
            and node.name == "default"
            and len(node.args) == 1
            and isinstance(node.args[0], jnodes.Const)
            and not (node.kwargs or node.dyn_args or node.dyn_kwargs)
        ):
            default, node = node.args[0].value, node.node
        if not isinstance(node, jnodes.Name) or node.name in _NOT_MERGE_NAMES:
            return None
        if node.name in env.globals:
            return None
        pieces.append((None, node.name, default))
    return pieces


def _merge(pieces: list[tuple[Any, ...]], context: Mapping[str, Any], html: bool) -> str:
    out = []
    for piece in pieces:
        if len(piece) == 1:
            out.append(piece[0])
            continue
        value = context.get(piece[1], _MISSING)
        if value is _MISSING:
            value = piece[2]
        out.append(escape(value) if html else str(value))
    return "".join(out)


_PLAIN = new_sandbox(autoescape=False)
_HTML = new_sandbox(autoescape=True)


class _Field:
    """One compiled field; `constant` holds the output when it needs no variables."""

    __slots__ = ("name", "template", "constant", "merge", "escape")

    def __init__(self, name: str, source: str, env: Sandbox) -> None:
        self.name = name
        if not isinstance(source, str):
            raise TemplateInvalid(name, "must be a string")
        try:
            self._compile(name, source, env)
        except (RecursionError, SyntaxError):
            # Python's own limits (recursion, nested blocks, parentheses), reached while
            # parsing, checking or compiling the template.
            raise TemplateInvalid(name, _TOO_DEEP) from None

    def _compile(self, name: str, source: str, env: Sandbox) -> None:
        try:
            tree = env.parse(source)
        except TemplateSyntaxError as exc:
            raise TemplateInvalid(name, f"line {exc.lineno}: {exc.message}") from None
        refuse_unsafe_nodes(name, tree)
        count_loop_items(tree)
        try:
            self.template = env.from_string(tree)
        except TemplateError as exc:
            raise TemplateInvalid(name, str(exc)) from None
        self.constant: str | None = None
        self.merge = _merge_pieces(tree, env)
        self.escape = env.autoescape is True
        if not meta.find_undeclared_variables(tree) - {LOOP_COUNTER}:
            self.constant = self.render({})

    def render(self, context: Mapping[str, Any]) -> str:
        if self.constant is not None:
            return self.constant
        if self.merge is not None:
            return _merge(self.merge, context, self.escape)
        try:
            return render_bounded(self.template, context)
        except SecurityError as exc:
            raise TemplateInvalid(self.name, f"not allowed: {exc}") from None
        except Exception as exc:
            # Anything untrusted template code raises is the template's failure.
            raise TemplateInvalid(self.name, f"{type(exc).__name__}: {exc}") from None


class CampaignTemplates:
    """Subject, text and (optional) HTML of one campaign, compiled once."""

    def __init__(self, subject: str, text: str, html: str | None = None) -> None:
        self.subject = _Field("subject", subject, _PLAIN)
        if self.subject.constant is not None:
            self.subject.constant = one_line(self.subject.constant)
        self.text = _Field("text", text, _PLAIN)
        self.html = _Field("html", html, _HTML) if html is not None else None

    @property
    def subject_is_constant(self) -> bool:
        return self.subject.constant is not None

    def render(self, context: Mapping[str, Any]) -> tuple[str, str, str | None]:
        """(subject on one line, text, html or None) for one recipient's context."""
        subject = self.subject.render(context)
        if self.subject.constant is None:
            subject = one_line(subject)
        html = self.html.render(context) if self.html is not None else None
        return subject, self.text.render(context), html


@functools.lru_cache(maxsize=32)
def compile_templates(subject: str, text: str, html: str | None = None) -> CampaignTemplates:
    """CampaignTemplates, cached: a worker builds one builder per batch of one campaign,
    and compiling costs more than rendering a whole batch of small mails."""
    return CampaignTemplates(subject, text, html)


def make_context(attributes: Mapping[str, Any], reserved: Mapping[str, Any]) -> dict[str, Any]:
    """A recipient's template context: attributes at top level, reserved names on top."""
    context = dict(attributes)
    context.update(reserved)
    return context


SAMPLE_ATTRIBUTES: dict[str, Any] = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "name": "Ada Lovelace",
    "company": "Analytical Engines Ltd",
    "country": "GB",
}

SAMPLE_RESERVED: dict[str, Any] = {
    "email": "ada@example.com",
    "subscriber_id": "sample",
    "unsubscribe_url": "https://mail.example.com/u/sample",
    "preferences_url": "https://mail.example.com/preferences/sample",
    "confirm_url": "https://mail.example.com/confirm/sample",
    "org_name": "Example Ltd.",
    "postal_address": "Example Ltd., 1 Example Street, Example Town",
    "topic_name": "Newsletter",
}


def placeholder_attributes(subject: str, text: str, html: str | None = None) -> dict[str, str]:
    """Attributes for a preview: each variable the templates use, other than the
    reserved names, set to `[name]`, so a preview shows where data goes and holds none."""
    names: set[str] = set()
    for source in (subject, text, html):
        if source is None:
            continue
        try:
            names |= meta.find_undeclared_variables(_PLAIN.parse(source))
        except (TemplateSyntaxError, RecursionError):
            continue
    return {name: f"[{name}]" for name in sorted(names - set(RESERVED_NAMES))}


def _subject_may_break_lines(source: str) -> bool:
    """True when the subject's own text or string literals hold a line break."""
    if _LINE_BREAKS.search(source):
        return True
    tree = _PLAIN.parse(source)
    return any(
        isinstance(node.value, str) and _LINE_BREAKS.search(node.value)
        for node in tree.find_all(jnodes.Const)
    )


def validate(subject: str, text: str, html: str | None = None) -> None:
    """Raise TemplateInvalid for a template the service will not send.

    Compiles every field, renders it for a sample recipient (the sandbox refusing
    anything that reaches for Python internals), and refuses a subject that could
    hold a line break. A missing attribute is not an error: it renders empty.
    """
    templates = CampaignTemplates(subject, text, html)
    if _subject_may_break_lines(subject):
        raise TemplateInvalid("subject", "must be a single line (no CR, LF or line separator)")
    context = make_context(SAMPLE_ATTRIBUTES, SAMPLE_RESERVED)
    fields = [templates.subject, templates.text]
    if templates.html is not None:
        fields.append(templates.html)
    for field in fields:
        try:
            output = render_bounded(field.template, context)
        except UndefinedError:
            # Using a missing attribute in arithmetic or a call fails for a sample
            # recipient; real recipients may all have it. Not a safety matter.
            continue
        except SecurityError as exc:
            raise TemplateInvalid(field.name, f"not allowed: {exc}") from None
        except Exception as exc:  # untrusted code: whatever it raises is its failure
            raise TemplateInvalid(field.name, f"{type(exc).__name__}: {exc}") from None
        if field.name == "subject" and _LINE_BREAKS.search(output):
            raise TemplateInvalid("subject", "renders with a line break")
