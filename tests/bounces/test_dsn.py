"""Reading DSNs (RFC 3464) and ARF reports (RFC 5965) from realistic samples in samples/."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailprefs.domain import dsn
from mailprefs.domain.errors import Invalid

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_a_dsn_with_status_5_1_1_is_a_hard_bounce_of_the_final_recipient():
    """Promise: a permanent failure of the address (5.1.1) is read as a hard bounce."""
    (report,) = dsn.parse(sample("dsn_hard_user_unknown.eml"))
    assert report.type == "bounce" and report.bounce == "hard"
    assert report.email == "jane.doe@example.org"
    assert "5.1.1" in report.diagnostic
    assert report.message_id == "<9f2c4e1a7b3d4c5e@mail.example.com>"
    assert report.source == "dsn"


def test_a_failed_dsn_with_a_4xx_status_is_a_soft_bounce():
    """Promise: a mailbox-full failure (4.2.2) is soft, however the MTA labels the action."""
    (report,) = dsn.parse(sample("dsn_soft_mailbox_full.eml"))
    assert (report.type, report.bounce, report.email) == ("bounce", "soft", "full.box@example.net")
    assert report.at.isoformat() == "2026-11-25T07:59:58+00:00"  # Last-Attempt-Date


def test_a_delayed_dsn_is_not_a_bounce():
    """Promise: `Action: delayed` is a warning (still retried), never counted as a bounce."""
    (report,) = dsn.parse(sample("dsn_delayed.eml"))
    assert report.type == "delayed" and report.bounce is None


def test_each_recipient_of_a_dsn_is_classified_on_its_own_status():
    """Promise: per-recipient fields decide per recipient (5.1.1 hard, 5.2.2 soft)."""
    reports = {r.email: r for r in dsn.parse(sample("dsn_two_recipients.eml"))}
    assert reports["gone@example.com"].bounce == "hard"
    assert reports["quota@example.com"].bounce == "soft"
    assert reports["gone@example.com"].message_id == "<policy-2026@mail.example.com>"


def test_an_arf_abuse_report_is_a_complaint_of_the_original_recipient():
    """Promise: RFC 5965 abuse feedback names the complainer through Original-Rcpt-To."""
    (report,) = dsn.parse(sample("arf_abuse.eml"))
    assert (report.type, report.email, report.source) == (
        "complaint",
        "complainer@example.com",
        "arf",
    )
    assert report.message_id == "<arf-original-1@mail.example.com>"


def test_an_arf_report_without_original_rcpt_to_uses_the_original_to_header():
    """Promise: a report with only the original headers still finds the complainer."""
    (report,) = dsn.parse(sample("arf_headers_only.eml"))
    assert (report.type, report.email) == ("complaint", "pat.reader@example.net")


def test_not_spam_feedback_is_not_a_complaint():
    """Promise: only abuse (and fraud) feedback becomes a complaint."""
    (report,) = dsn.parse(sample("arf_not_spam.eml"))
    assert report.type == "ignored"


@pytest.mark.parametrize(
    "raw",
    [b"", b"   \r\n", sample("plain_message.eml"), b"\x00\x01garbage", b"no header here"],
)
def test_anything_else_is_refused_as_invalid(raw):
    """Promise: a body that is no DSN, ARF report or known bounce is refused, not guessed."""
    with pytest.raises(Invalid):
        dsn.parse(raw)


def test_text_taken_from_a_report_holds_no_nul_or_line_breaks():
    """Promise: stored diagnostics are one clean line (PostgreSQL refuses NUL)."""
    assert dsn.clean("550\x00 user\r\n unknown\x07") == "550 user unknown"
    assert dsn.clean("") is None
