"""The MIME messages: per-stream headers, footers, links, encoding, no header injection."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime

import pytest

from mailprefs import clock
from mailprefs.config import ConfigError
from mailprefs.config import load as load_config
from mailprefs.delivery.message import TEST_COPY_ID, MessageBuilder, message_settings
from mailprefs.delivery.types import StreamIdentity
from mailprefs.domain.tokens import TokenInvalid
from tests.support import mail
from tests.support.mail import BASE_URL, POSTAL, header_block, html_of, parse, recipient, text_of


def build(campaign=None, who=None, *, test_copy=False, **settings):
    builder = MessageBuilder(
        mail.settings(**settings), mail.tokens(), campaign or mail.marketing(), test_copy=test_copy
    )
    return builder.build(who or recipient())


def token_in(url_prefix: str, text: str) -> str:
    match = re.search(re.escape(url_prefix) + r"([A-Za-z0-9_.\-]+)", text)
    assert match, f"no {url_prefix} link in {text!r}"
    return match.group(1)


def test_marketing_mail_carries_one_click_unsubscribe_and_list_id():
    """Promise: marketing mail has RFC 8058 List-Unsubscribe (https first, then the
    mailto), List-Unsubscribe-Post, and an RFC 2919 List-Id."""
    message = parse(build())
    unsubscribe = str(message["List-Unsubscribe"])
    assert re.fullmatch(
        rf"<{re.escape(BASE_URL)}/u/[A-Za-z0-9_.\-]+>, "
        r"<mailto:unsubscribe@news\.example\.test\?subject=unsubscribe>",
        unsubscribe,
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "Offers and product news <offers.lists.example.test>"


def test_marketing_mail_without_a_mailto_has_only_the_https_link():
    """Promise: the mailto is added only where configured."""
    message = parse(build(unsubscribe_mailto=None))
    assert re.fullmatch(rf"<{re.escape(BASE_URL)}/u/[^>]+>", str(message["List-Unsubscribe"]))


def test_marketing_footer_has_both_links_and_the_postal_address_in_text_and_html():
    """Promise: every marketing mail says why it came and how to leave, and where the
    sender is, in both parts."""
    built = build()
    for body in (text_of(built), html_of(built)):
        assert f"{BASE_URL}/u/" in body
        assert f"{BASE_URL}/preferences/" in body
        assert POSTAL in body
        assert "Offers and product news" in body
    assert token_in(f"{BASE_URL}/u/", text_of(built)) == token_in(
        "<" + BASE_URL + "/u/", str(parse(built)["List-Unsubscribe"])
    )


def test_administrative_mail_has_no_unsubscribe_headers_and_says_why():
    """Promise: administrative mail carries no unsubscribe header and a footer saying
    why it cannot be opted out of, with the preference link and postal address."""
    built = build(mail.administrative(html="<p>Receipt for {{ first_name }}</p>"))
    head = header_block(built).lower()
    assert b"list-unsubscribe" not in head and b"list-id" not in head
    for body in (text_of(built), html_of(built)):
        flat = " ".join(body.split())
        assert "administrative message" in flat
        assert "cannot opt out of these messages while you are registered" in flat
        assert f"{BASE_URL}/preferences/" in body
        assert f"{BASE_URL}/u/" not in body
        assert POSTAL in body


def test_each_stream_has_its_own_sender_identity():
    """Promise: marketing and administrative mail come from their own From/Reply-To."""
    marketing = parse(build())
    admin = parse(build(mail.administrative()))
    assert marketing["From"] == "Example News <news@news.example.test>"
    assert marketing["Reply-To"] == "replies@example.test"
    assert admin["From"] == "Example <account@account.example.test>"
    assert admin["Reply-To"] is None
    assert build().envelope_from == "news@news.example.test"
    assert build(mail.administrative()).envelope_from == "account@account.example.test"


def test_every_message_has_a_unique_message_id_and_the_current_date():
    """Promise: both streams carry Message-ID (at the From domain) and Date."""
    clock.freeze(clock.now().replace(microsecond=0))
    builder = MessageBuilder(mail.settings(), mail.tokens(), mail.marketing())
    first, second = builder.build(recipient()), builder.build(recipient())
    assert first.message_id != second.message_id
    for built in (first, second, build(mail.administrative())):
        message = parse(built)
        assert message["Message-ID"] == built.message_id
        assert re.fullmatch(r"<[0-9a-f]{32}@[a-z.]+\.example\.test>", built.message_id)
        assert parsedate_to_datetime(message["Date"]) == clock.now()
    assert first.message_id.endswith("@news.example.test>")


def test_html_campaigns_are_multipart_alternative_and_text_ones_a_single_part():
    """Promise: text + HTML go as multipart/alternative; text alone as one text/plain."""
    both = parse(build())
    assert both.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in both.iter_parts()] == ["text/plain", "text/html"]
    single = parse(build(mail.marketing(html=None)))
    assert single.get_content_type() == "text/plain" and not single.is_multipart()
    assert single.get_content_charset() == "utf-8"
    assert single["Content-Transfer-Encoding"] == "quoted-printable"
    assert "Hello Jane" in single.get_content()


def test_messages_parse_without_defects_with_crlf_lines_under_the_limit():
    """Promise: the bytes are clean RFC 5322/2045: CRLF only, lines of at most 998
    octets (76 in bodies), 7-bit, no parser defects, even for very long lines."""
    long_line = "word " * 2000 + "x" * 3000
    campaign = mail.marketing(
        subject="{{ first_name }} " + "long subject " * 40,
        text=long_line + "\n" + long_line,
        html="<p>" + long_line + "</p>",
    )
    built = build(campaign)
    assert b"\n" not in built.raw.replace(b"\r\n", b"")
    assert b"\r" not in built.raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in built.raw.split(b"\r\n"))
    assert built.raw.isascii()
    message = parse(built)
    for part in message.walk():
        assert not part.defects, part.defects
    assert long_line in text_of(built)


def test_non_ascii_subject_and_bodies_round_trip():
    """Promise: non-ASCII subjects (RFC 2047) and bodies (UTF-8) arrive exactly."""
    subject = "Grüße, {{ first_name }}! 🎉 Ünïcödé café — " + "ž" * 60
    campaign = mail.marketing(
        subject=subject,
        text="Olá {{ first_name }}, voilà: 日本語.",
        html="<p>Olá {{ first_name }} 日本語</p>",
    )
    built = build(campaign, recipient(first_name="Zoë"))
    message = parse(built)
    assert message["Subject"] == subject.replace("{{ first_name }}", "Zoë")
    assert text_of(built).startswith("Olá Zoë, voilà: 日本語.")
    assert "<p>Olá Zoë 日本語</p>" in html_of(built)


def test_body_lines_that_look_like_mbox_separators_or_dots_survive():
    """Promise: a body line starting "From " or a lone "." arrives unchanged."""
    text = "From the team\n.\n..\nline\n"
    built = build(mail.marketing(text=text, html=None))
    assert text_of(built).startswith(text)


def test_html_footer_goes_inside_the_body_element():
    """Promise: the HTML footer is part of the document, not after </html>."""
    html = html_of(build())
    assert html.rstrip().endswith("</body></html>")
    assert html.index(f"{BASE_URL}/u/") < html.index("</body>")
    attribute_escaped = html_of(build(mail.marketing(html="<p>no body tag</p>")))
    assert f"{BASE_URL}/preferences/" in attribute_escaped


def test_attribute_values_are_escaped_in_html_and_raw_in_text():
    """Promise: a <script> in an attribute is inert in the HTML part."""
    built = build(who=recipient(first_name="<script>alert(1)</script>"))
    assert "Hello <script>alert(1)</script>," in text_of(built)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_of(built)
    assert "<script>" not in html_of(built)


def test_link_tokens_load_back_to_the_right_subscriber_topic_and_campaign():
    """Promise: the links in mail carry the recipient's public id, the topic and the
    campaign, signed for their purpose, and never the address."""
    tokens = mail.tokens()
    built = build(who=recipient("jane@example.org"))
    unsubscribe = token_in(f"{BASE_URL}/u/", text_of(built))
    preferences = token_in(f"{BASE_URL}/preferences/", text_of(built))
    assert tokens.load("unsubscribe", unsubscribe) == {
        "s": "sub_jane",
        "t": "offers",
        "c": "cmp_marketing1",
    }
    assert tokens.load("preferences", preferences) == {"s": "sub_jane", "c": "cmp_marketing1"}
    with pytest.raises(TokenInvalid):
        tokens.load("preferences", unsubscribe)  # one salt per purpose
    assert b"jane@example.org" not in built.raw.replace(b"To: jane@example.org\r\n", b"")


def test_templates_can_place_the_links_themselves():
    """Promise: reserved names give templates the recipient's own links."""
    campaign = mail.marketing(
        text="Leave: {{ unsubscribe_url }} | Prefs: {{ preferences_url }} | {{ org_name }}",
        html=None,
    )
    text = text_of(build(campaign))
    first_line = text.splitlines()[0]
    assert f"Leave: {BASE_URL}/u/" in first_line and f"Prefs: {BASE_URL}/preferences/" in first_line
    assert first_line.endswith("| Example Ltd.")


def test_confirmation_mail_carries_a_confirm_link_for_the_topic():
    """Promise: a double opt-in mail links to /confirm with a token for that topic."""
    campaign = mail.administrative(
        kind="confirmation",
        text="Please confirm: {{ confirm_url }}",
        meta={"confirm_topic": "newsletter"},
    )
    token = token_in(f"{BASE_URL}/confirm/", text_of(build(campaign)))
    assert mail.tokens().load("confirm", token) == {"s": "sub_jane", "t": "newsletter"}
    with pytest.raises(ValueError):
        build(mail.administrative(kind="confirmation", meta={}))


def test_test_copies_are_marked_and_their_links_are_inert():
    """Promise: a test copy says so in subject and header, and its links act on nobody."""
    built = build(test_copy=True)
    message = parse(built)
    assert message["Subject"] == "[TEST] News for Jane"
    assert message["X-Mailprefs-Test"] == "yes"
    tokens = mail.tokens()
    unsubscribe = token_in(f"{BASE_URL}/u/", text_of(built))
    assert tokens.load("unsubscribe", unsubscribe)["s"] == TEST_COPY_ID
    header_token = token_in("<" + BASE_URL + "/u/", str(message["List-Unsubscribe"]))
    assert tokens.load("unsubscribe", header_token)["s"] == TEST_COPY_ID
    preferences = token_in(f"{BASE_URL}/preferences/", html_of(built))
    assert tokens.load("preferences", preferences)["s"] == TEST_COPY_ID
    assert parse(build())["X-Mailprefs-Test"] is None
    constant = parse(build(mail.marketing(subject="Constant"), test_copy=True))
    assert constant["Subject"] == "[TEST] Constant"


# -- header injection ------------------------------------------------------------------
def assert_no_injected_header(built) -> None:
    head = header_block(built)
    names = [
        line.split(b":", 1)[0].lower() for line in head.split(b"\r\n") if line[:1] not in b" \t"
    ]
    assert b"bcc" not in names
    assert len(names) == len(set(names)), names
    message = parse(built)
    assert message["Bcc"] is None
    assert "\n" not in str(message["Subject"]) and "\r" not in str(message["Subject"])


@pytest.mark.parametrize(
    "subject",
    [
        "Hi\r\nBcc: evil@example.org",
        "Hi\nBcc: evil@example.org",
        "Hi\rBcc: evil@example.org",
        "Hi\u2028Bcc: evil@example.org",
        "Hi\x85Bcc: evil@example.org",
        "Hi\r\n\r\nbody injection",
        "Hï\r\nBcc: evil@example.org",
    ],
)
def test_a_subject_with_line_breaks_cannot_inject_a_header(subject):
    """Promise: even a subject that got past validation stays one header."""
    built = build(mail.marketing(subject=subject))
    assert_no_injected_header(built)
    assert (
        "Bcc: evil@example.org" in parse(built)["Subject"]
        or "body injection" in parse(built)["Subject"]
    )


@pytest.mark.parametrize(
    "value",
    [
        "x\r\nBcc: y@z.example",
        "x\nBcc: y@z.example",
        "x\u2028Bcc: y@z.example",
        "x\x85Bcc: y@z.example",
        "x\x00Bcc: y@z.example",
    ],
)
def test_an_attribute_with_line_breaks_cannot_inject_a_header_through_the_subject(value):
    """Promise: a recipient attribute used in the subject cannot add a header."""
    built = build(who=recipient(first_name=value))
    assert_no_injected_header(built)
    assert parse(built)["Subject"].endswith("Bcc: y@z.example")


@pytest.mark.parametrize(
    "address",
    [
        "jane@example.org\r\nBcc: evil@example.org",
        "jane@example.org\n",
        "Jane <jane@example.org>",
        "jane@exa mple.org",
        "jane",
        "jane@example.org\x00",
    ],
)
def test_a_recipient_address_that_is_not_a_plain_address_is_refused(address):
    """Promise: the To header can only ever hold one bare address."""
    builder = MessageBuilder(mail.settings(), mail.tokens(), mail.marketing())
    with pytest.raises(ValueError):
        builder.build(recipient(address))


@pytest.mark.parametrize(
    "identity",
    [
        StreamIdentity("News\r\nBcc: evil@example.org <news@example.test>"),
        StreamIdentity("News <news@example.test>\nBcc: evil@example.org"),
        StreamIdentity("News <news@example.test>", "reply@example.test\r\nBcc: evil@example.org"),
        StreamIdentity("a@example.test, b@example.test"),
    ],
)
def test_a_sender_identity_with_line_breaks_or_two_addresses_is_refused(identity):
    """Promise: From and Reply-To cannot be used to inject headers or recipients."""
    with pytest.raises(ValueError):
        MessageBuilder(mail.settings(marketing=identity), mail.tokens(), mail.marketing())


def test_a_non_ascii_sender_name_is_encoded():
    """Promise: a sender name in any language reaches the reader intact."""
    identity = StreamIdentity('"Zoë\'s Café, Ltd" <news@news.example.test>')
    message = parse(build(marketing=identity))
    assert message["From"].addresses[0].display_name == "Zoë's Café, Ltd"
    assert message["From"].addresses[0].addr_spec == "news@news.example.test"


def test_an_internationalised_domain_is_written_in_ascii():
    """Promise: an IDN recipient domain goes out in its IDNA form, in envelope and To."""
    built = build(who=recipient("jane@bücher.example"))
    assert built.to == "jane@xn--bcher-kva.example"
    assert parse(built)["To"] == "jane@xn--bcher-kva.example"
    # IDNA 2008, as registration normalises it: "faß.de" is not "fass.de".
    assert build(who=recipient("jane@faß.de")).to == "jane@xn--fa-hia.de"


# -- settings from configuration ---------------------------------------------------------
def test_message_settings_come_from_the_configuration(tmp_path):
    """Promise: the stream identities, links and footer data are the configured ones."""
    config = load_config(
        {
            "MAILPREFS_BASE_URL": "https://mail.example.test/",
            "MAILPREFS_MARKETING_REPLY_TO": "replies@example.test",
            "MAILPREFS_UNSUBSCRIBE_MAILTO": "mailto:unsub@example.test",
            "MAILPREFS_ORG_NAME": "Org",
            "MAILPREFS_POSTAL_ADDRESS": "1 Road",
        }
    )
    settings = message_settings(config)
    assert settings.base_url == "https://mail.example.test"
    assert settings.marketing.reply_to == "replies@example.test"
    assert settings.administrative.from_addr == "ICVT <account@mail.example.com>"
    assert settings.unsubscribe_mailto == "unsub@example.test"
    assert (settings.org_name, settings.postal_address) == ("Org", "1 Road")
    assert settings.dkim is None


@pytest.mark.parametrize(
    "environ, variable",
    [
        ({"MAILPREFS_DKIM_DOMAIN": "d.example", "MAILPREFS_DKIM_SELECTOR": "s"}, "DKIM"),
        (
            {
                "MAILPREFS_DKIM_DOMAIN": "d.example",
                "MAILPREFS_DKIM_SELECTOR": "s",
                "MAILPREFS_DKIM_KEY_FILE": "/nonexistent/key.pem",
            },
            "MAILPREFS_DKIM_KEY_FILE",
        ),
        (
            {"MAILPREFS_MARKETING_FROM": "News\nBcc: x@y.example <n@example.test>"},
            "MAILPREFS_MARKETING_FROM",
        ),
        ({"MAILPREFS_BASE_URL": "https://x.example/\r\nBcc: y"}, "MAILPREFS_BASE_URL"),
    ],
)
def test_a_bad_mail_setting_stops_start_up_naming_the_variable(environ, variable):
    """Promise: a configured-but-unusable DKIM key, identity or base URL is an error at
    start, not a silent unsigned or broken send."""
    with pytest.raises(ConfigError, match=variable):
        message_settings(load_config(environ))


def test_a_key_file_that_is_not_a_private_key_stops_start_up(tmp_path):
    """Promise: DKIM with an unusable key refuses to start."""
    key = tmp_path / "key.pem"
    key.write_text("not a key")
    environ = {
        "MAILPREFS_DKIM_DOMAIN": "d.example",
        "MAILPREFS_DKIM_SELECTOR": "s",
        "MAILPREFS_DKIM_KEY_FILE": str(key),
    }
    with pytest.raises(ConfigError, match="MAILPREFS_DKIM_KEY_FILE"):
        message_settings(load_config(environ))
