"""Issue 13 findings 4 and 11 (templates): every string-producing operation is bounded
by size before it runs, so no template can make a web or worker process build
gigabytes or spin; one expensive recipient fails alone, not the worker."""

from __future__ import annotations

import time

import pytest

from mailprefs.domain.templating import CampaignTemplates, TemplateInvalid, validate

EXPENSIVE = [
    '{{ ("ab"*10000)|replace("a","a"*100000)|length }}',
    '{% for i in range(1000) %}{{ ("word "*20000)|wordwrap(1)|length }}{% endfor %}',
    '{{ "%2000000000d" % 1 }}',
    '{{ "%*d" % (2000000000, 1) }}',
    '{{ "%2000000000d"|format(1) }}',
    '{{ "{:>2000000000}".format(1) }}',
    '{{ "{0:{1}}".format(1, 2000000000) }}',
    '{{ "{x:>2000000000}".format_map({"x": 1}) }}',
    '{{ "x"|center(2000000000) }}',
    '{{ "x".center(2000000000) }}',
    '{{ "x".ljust(2000000000) }}',
    '{{ "x".zfill(2000000000) }}',
    '{{ ("\\t"*1000).expandtabs(2000000) }}',
    '{{ ("x"*100000)|list|join("y"*100000) }}',
    '{{ ("y"*100000).join("x"*100000) }}',
    '{{ ("ab"*10000).replace("a", "a"*100000) }}',
    '{{ ("x\\n"*50000)|indent(100000) }}',
    '{% set a = "x"*100000 %}{% set b = a~a~a~a %}{% set c = b~b~b~b %}{{ c~c~c~c|length }}',
    '{% set a = "x"*100000 %}{% set b = a+a+a+a %}{% set c = b+b+b+b %}{{ (c+c)|length }}',
    '{% for i in range(10000) %}{{ ("x"*50000)|replace("x", "yy")|length }}{% endfor %}',
]


@pytest.mark.parametrize("template", EXPENSIVE)
def test_expensive_string_operations_are_refused_quickly_at_validation(template):
    started = time.monotonic()
    with pytest.raises(TemplateInvalid) as refused:
        validate("Subject", template)
    assert refused.value.field == "text"
    assert "not allowed" in refused.value.detail
    assert time.monotonic() - started < 5, "refused before the work was done"


@pytest.mark.parametrize(
    "template",
    [
        '{{ "%5s|%-3d" % ("ab", 7) }}',
        '{{ "{:>5}".format("ab") }}',
        '{{ first_name|replace("a", "o")|center(9) }}',
        "{{ [first_name, last_name]|join(', ') }}",
        "{{ first_name ~ ' ' ~ last_name }}",
        '{{ "hello world"|wordwrap(5) }}',
    ],
)
def test_ordinary_string_operations_still_render(template):
    validate("Subject", template)
    rendered = CampaignTemplates("S", template).render(
        {"first_name": "Ada", "last_name": "Lovelace"}
    )[1]
    assert rendered.strip()


def test_a_template_cheap_for_the_sample_but_expensive_for_one_recipient_fails_alone():
    """Validation passes (the sample is small); the one recipient whose data makes it
    expensive is refused for their message only; the others render."""
    template = '{{ bio|replace("a", "a"*1000) }}'
    validate("Subject", template)
    templates = CampaignTemplates("S", template)
    assert templates.render({"bio": "abc"})[1].startswith("a" * 1000)
    with pytest.raises(TemplateInvalid):
        templates.render({"bio": "a" * 5000})
    assert templates.render({"bio": "xyz"})[1] == "xyz"
