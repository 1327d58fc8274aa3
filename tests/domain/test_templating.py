"""Campaign templates: rendered in Jinja's sandbox, per recipient, safely."""

from __future__ import annotations

import pytest

from mailprefs.domain.templating import (
    RESERVED_NAMES,
    CampaignTemplates,
    TemplateInvalid,
    make_context,
    placeholder_attributes,
    validate,
)

INTERNALS = [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__dict__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ range.__self__ }}",
    "{{ first_name._secret }}",
    "{{ first_name['__class__'] }}",
    "{{ first_name|attr('__class__') }}",
    "{% set n = '__cla' ~ 'ss__' %}{{ first_name|attr(n) }}",
    "{% set n = '__cla' ~ 'ss__' %}{{ first_name[n] }}",
    "{{ '{0.__class__}'.format(first_name) }}",
    "{{ first_name.format_map }}{{ [].append(1) }}",
    "{% include 'secrets.txt' %}",
    "{% import 'macros.html' as m %}",
    "{% from 'macros.html' import x %}",
    "{% extends 'base.html' %}",
    "{{ 'x' * 100000000 }}",
    "{{ 99 ** 99999 }}",
    "{{ range(10 ** 7) | list }}",
]


@pytest.mark.parametrize("field", ["subject", "text", "html"])
@pytest.mark.parametrize("source", INTERNALS)
def test_a_template_reaching_for_python_internals_is_refused(field, source):
    """Promise: a template that reaches for Python internals (or a loader, or unbounded
    memory) is refused, naming the field, before anything is sent."""
    fields = {"subject": "Hi", "text": "Hello", "html": "<p>Hello</p>"}
    fields[field] = source
    with pytest.raises(TemplateInvalid) as caught:
        validate(fields["subject"], fields["text"], fields["html"])
    assert caught.value.field == field


RUNAWAYS = [
    "{% macro f(n) %}{{ f(n) }}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{% call f() %}x{% endcall %}",
    "{% for x in interests recursive %}{{ loop(interests) }}{% endfor %}",
    "{% for a in range(100000) %}{% for b in range(100) %}xxxxxxxxxx{% endfor %}{% endfor %}",
    # Loops that write nothing: bounded by the items they go through, not by the output
    # (9 million steps without the bound, a few seconds; the real thing is 10**10).
    "{% for a in range(3000) %}{% for b in range(3000) %}{% endfor %}{% endfor %}",
    "{% for a in range(2000) %}{% if range(5000)|sum < 0 %}x{% endif %}{% endfor %}",
    "{{ range(20000)|sum }}",
]


@pytest.mark.parametrize("source", RUNAWAYS)
def test_a_template_that_could_run_away_is_refused(source):
    """Promise: a template cannot make the service build unbounded output or recurse
    exponentially (macros, recursive loops, giant loops are refused)."""
    with pytest.raises(TemplateInvalid) as caught:
        validate("Hi", source)
    assert caught.value.field == "text"


def test_loops_get_ten_thousand_items_per_recipient_and_field():
    """Promise: the loop bound is per render (each recipient starts afresh) and leaves
    room for what mail does with loops: a recipient's list, `loop` variables, `else`."""
    templates = CampaignTemplates(
        "Hi",
        "{% for o in orders %}{{ loop.index }}/{{ loop.length }} {{ o }};"
        "{% else %}none{% endfor %}{% for i in range(9000) %}{% endfor %}",
    )
    for _ in range(3):
        assert templates.render({"orders": ["a", "b"]})[1] == "1/2 a;2/2 b;"
    assert templates.render({"orders": []})[1] == "none"
    with pytest.raises(TemplateInvalid, match="more than 10000 loop iterations"):
        templates.render({"orders": list(range(1001))})


@pytest.mark.parametrize(
    "source", ["{% set _mailprefs_loop_items = 0 %}", "{{ _mailprefs_loop_items([1]) }}"]
)
def test_the_loop_counter_cannot_be_replaced_or_called(source):
    with pytest.raises(TemplateInvalid, match="reserved name"):
        validate("Hi", source)


def test_a_sandbox_escape_on_a_branch_the_sample_misses_is_still_refused_at_send():
    """Promise: the sandbox holds at send time too, for a branch only one recipient takes."""
    source = (
        "{% if first_name == 'Eve' %}{% set n = '__cla' ~ 'ss__' %}{{ first_name[n] }}{% endif %}"
    )
    templates = CampaignTemplates("Hi", source)
    assert templates.render({"first_name": "Ada"})[1] == ""
    with pytest.raises(TemplateInvalid) as caught:
        templates.render({"first_name": "Eve"})
    assert caught.value.field == "text"


@pytest.mark.parametrize("field", ["subject", "text", "html"])
def test_a_syntax_error_is_refused_naming_the_field(field):
    """Promise: a template that does not compile is refused with its field and line."""
    fields = {"subject": "Hi", "text": "Hello", "html": "<p>Hello</p>"}
    fields[field] = "{{ first_name "
    with pytest.raises(TemplateInvalid) as caught:
        validate(fields["subject"], fields["text"], fields["html"])
    assert caught.value.field == field and "line 1" in caught.value.detail


def test_recipient_attributes_are_rendered_per_recipient():
    """Promise: each recipient gets their own attributes in subject, text and HTML."""
    templates = CampaignTemplates(
        "Hi {{ first_name }}", "Dear {{ first_name }} of {{ city }}", "<b>{{ first_name }}</b>"
    )
    assert templates.render({"first_name": "Ada", "city": "London"}) == (
        "Hi Ada",
        "Dear Ada of London",
        "<b>Ada</b>",
    )
    assert templates.render({"first_name": "Alan", "city": "Wilmslow"})[0] == "Hi Alan"


@pytest.mark.parametrize(
    "source, expected",
    [
        ("Hi {{ first_name }}!", "Hi !"),
        ("Hi {{ first_name|default('there') }}!", "Hi there!"),
        ("{{ company.name }}|{{ company.address.city }}", "|"),
        ("{% if vip %}VIP{% else %}regular{% endif %}", "regular"),
        ("{% for item in interests %}{{ item }}{% endfor %}.", "."),
        ("{{ first_name|upper }}{{ first_name|title }}", ""),
    ],
)
def test_a_missing_attribute_renders_empty_and_does_not_stop_the_send(source, expected):
    """Promise: a recipient lacking an attribute still gets the mail (the gap renders
    empty), and validation accepts such a template."""
    validate("Subject", source, None)
    assert CampaignTemplates("Subject", source).render({})[1] == expected


def test_html_is_autoescaped_and_text_is_not():
    """Promise: attribute values cannot inject markup into the HTML part."""
    templates = CampaignTemplates("Hi", "Hi {{ first_name }}", "<p>Hi {{ first_name }}</p>")
    _, text, html = templates.render({"first_name": "<script>alert(1)</script>&"})
    assert text == "Hi <script>alert(1)</script>&"
    assert html == "<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;&amp;</p>"
    assert "<script>" not in html


@pytest.mark.parametrize(
    "value",
    [
        "x\r\nBcc: y@example.org",
        "x\nBcc: y@example.org",
        "x\rBcc: y@example.org",
        "x\u2028Bcc: y@example.org",
        "x\u2029Bcc: y@example.org",
        "x\x85Bcc: y@example.org",
        "x\x0bBcc: y@example.org\x0c",
        "x\x00\x1b\x1eBcc: y@example.org",
    ],
)
def test_a_rendered_subject_is_always_one_line(value):
    """Promise: no attribute value can break the subject onto a second line."""
    subject, _, _ = CampaignTemplates("Hi {{ first_name }}", "x").render({"first_name": value})
    assert subject.splitlines() == [subject]
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in subject)
    assert subject.startswith("Hi x") and subject.endswith("Bcc: y@example.org")


@pytest.mark.parametrize(
    "subject",
    [
        "Hi\r\nBcc: evil@example.org",
        "Hi\nthere",
        "Hi\u2028there",
        "{{ 'Hi\\nBcc: evil@example.org' }}",
        "{% if x %}\n{% endif %}Hi",
        "Hi {{ first_name|wordwrap(2) }}",
    ],
)
def test_a_subject_that_could_hold_a_line_break_is_refused(subject):
    """Promise: a subject template whose output could hold CR or LF is refused."""
    with pytest.raises(TemplateInvalid) as caught:
        validate(subject, "text")
    assert caught.value.field == "subject"


def test_a_field_without_variables_is_rendered_once_and_reused():
    """Promise (speed): a constant field is not rendered again for every recipient."""
    templates = CampaignTemplates("Our {{ 'news' | upper }}", "Same for everyone", "<p>x</p>")
    first = templates.render({"first_name": "A"})
    second = templates.render({"first_name": "B"})
    assert first == ("Our NEWS", "Same for everyone", "<p>x</p>")
    assert all(a is b for a, b in zip(first, second, strict=True))
    assert templates.subject_is_constant


MERGE_VALUES = [
    "Ada",
    "<b>&'\"",
    "",
    None,
    0,
    3,
    1.5,
    True,
    ["a", "<b>"],
    {"k": "<v>"},
    "Zoë Ünïcödé",
]


@pytest.mark.parametrize("html", [False, True])
@pytest.mark.parametrize("value", MERGE_VALUES + ["__missing__"])
def test_the_mail_merge_fast_path_renders_exactly_like_jinja(html, value):
    """Promise: the fast path for plain `{{ name }}` templates gives Jinja's output."""
    source = "A {{ first_name }} B {{ first_name|default('there') }} C {{ other }}\n"
    templates = CampaignTemplates("s", source, source if html else None)
    field = templates.html if html else templates.text
    assert field.merge is not None  # the fast path is in use
    context = {} if value == "__missing__" else {"first_name": value}
    assert field.render(context) == field.template.render(context)


def test_reserved_names_override_attributes():
    """Promise: an attribute cannot replace a link or identity the service fills in."""
    context = make_context(
        {"unsubscribe_url": "https://evil.example/", "first_name": "Ada"},
        {name: f"real-{name}" for name in RESERVED_NAMES},
    )
    assert context["unsubscribe_url"] == "real-unsubscribe_url"
    assert context["first_name"] == "Ada"


def test_preview_placeholders_name_the_variables_and_hold_no_data():
    """Promise: a preview shows where data goes without any personal data."""
    attributes = placeholder_attributes(
        "Hi {{ first_name }}", "{{ city }} {{ unsubscribe_url }}", "<p>{{ email }}</p>"
    )
    assert attributes == {"city": "[city]", "first_name": "[first_name]"}
