"""Bad import files get a clear error naming the line and write nothing; bad rows are
refused one by one, listed with their line and field."""

from __future__ import annotations

import pytest

from mailprefs.domain import imports
from mailprefs.domain.import_read import FileProblem
from tests.imports.support import everything, run_import, store

GOOD = "email,topic,consent_at,source\nok@example.com,offers,2025-01-01T00:00:00Z,api\n"


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        (GOOD.encode() + b"caf\xe9@example.com,offers,,\n", 3, "line 3 is not UTF-8"),
        (b"", 1, "empty"),
        (b"name,topic\nAnn,offers\n", 1, "no 'email' column"),
        (b"email,topic,email\na@example.com,offers,b@example.com\n", 1, "appears twice"),
        (b"email,favourite_colour\na@example.com,red\n", 1, "unknown column 'favourite_colour'"),
        (b"email,attr.bad-name\na@example.com,x\n", 1, "attribute name"),
        (b'{"email": "a@example.com"}\n', 1, "looks like JSON"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", 1, "not UTF-8"),
        (GOOD.encode() + b'"unterminated\x00,x\n', 3, "line 3"),
    ],
    ids=[
        "not-utf8",
        "empty",
        "no-email",
        "duplicate-column",
        "unknown-column",
        "bad-attribute-name",
        "json-as-csv",
        "binary",
        "nul",
    ],
)
def test_a_file_that_cannot_be_imported_is_refused_whole_naming_the_line(
    app, db, tmp_path, content, line, words
):
    """The check before queueing names the line and the problem; nothing is queued or written."""
    before = everything(db)
    path = store(tmp_path, content)
    with db.transaction() as session, pytest.raises(FileProblem) as caught:
        imports.submit(session, path=path, kind="subscribers", fmt="csv", actor="t")
    assert caught.value.line == line
    assert words in caught.value.detail
    assert everything(db) == before


def test_a_byte_order_mark_is_accepted(app, db, tmp_path):
    """A UTF-8 BOM (as spreadsheets write it) before the header is not part of `email`."""
    result = run_import(app, tmp_path, b"\xef\xbb\xbf" + GOOD.encode())
    assert result["status"] == "done" and result["counts"]["created"] == 1


def test_bad_rows_are_refused_one_by_one_with_line_and_field(app, db, tmp_path):
    """CR/LF/NUL in an attribute, a bad date, a naive date, a future date, an unknown or
    administrative topic, an under-13 age, a bad status or source, a short row: each
    refused with its line and field; the good rows are imported."""
    content = (
        "email,topic,consent_at,source,status,attr.note,attr.age\n"
        'a@example.com,offers,2025-01-01T00:00:00Z,api,,"two\nlines",\n'  # lines 2-3
        "b@example.com,offers,yesterday,api,,,\n"
        "c@example.com,offers,2025-01-01T00:00:00,api,,,\n"
        "d@example.com,offers,2999-01-01T00:00:00Z,api,,,\n"
        "e@example.com,nosuch,2025-01-01T00:00:00Z,api,,,\n"
        "f@example.com,account,2025-01-01T00:00:00Z,api,,,\n"
        "g@example.com,offers,2025-01-01T00:00:00Z,api,,,12\n"
        "h@example.com,offers,2025-01-01T00:00:00Z,api,maybe,,\n"
        "i@example.com,offers,2025-01-01T00:00:00Z,fax,,,\n"
        "j@example.com,offers\n"
        "fine@example.com,offers,2025-01-01T00:00:00Z,api,,,30\n"
    )
    result = run_import(app, tmp_path, content.encode() + b'k@example.com,,,,,"nul\x00",\n')
    assert result["status"] == "done"
    assert [(e["line"], e["field"]) for e in result["errors"]] == [
        (2, "attr.note"),
        (4, "consent_at"),
        (5, "consent_at"),
        (6, "consent_at"),
        (7, "topic"),
        (8, "topic"),
        (9, "attr.age"),
        (10, "status"),
        (11, "source"),
        (12, "row"),
        (14, "attr.note"),
    ]
    assert result["counts"]["invalid"] == 11 and result["counts"]["created"] == 1
    assert result["counts"]["rows"] == 12


def test_suppression_import_fills_the_list_and_registers_nobody(app, db, client, tmp_path):
    """Addresses and plain SHA-256 hashes are suppressed; nobody is registered; a person
    registering later with a hashed address is suppressed at once."""
    import hashlib

    from tests.conftest import _key, bearer

    hashed_address = hashlib.sha256(b"later@example.com").hexdigest()
    content = (
        "email,email_sha256,reason\n"
        "bounced@example.com,,bounce\n"
        f",{hashed_address},complaint\n"
        "bounced@example.com,,bounce\n"
        "bad,,bounce\n"
        "x@example.com,,spam\n"
    )
    before = everything(db)
    result = run_import(app, tmp_path, content, kind="suppressions")
    counts = result["counts"]
    assert counts["created"] == 2 and counts["duplicates"] == 1 and counts["invalid"] == 2
    assert counts["suppressed"] == 3 and counts["rows"] == 5
    after = everything(db)
    assert after["people"] == before["people"] == []
    assert len(after["suppressions"]) == 1
    key = _key(db, "ops")
    reply = client.post(
        "/api/v1/subscribers",
        json={"email": "later@example.com", "consents": [{"topic": "offers", "source": "api"}]},
        headers=bearer(key),
    )
    assert reply.status_code == 201
    assert len(everything(db)["suppressions"]) == 2
