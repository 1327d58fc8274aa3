"""DKIM on a worker's pool: the send loop leaves the signature to the sender threads
(OpenSSL signs there while the loop asks the gate and builds the next message), and
every message that reaches the relay is signed and verifies with dkimpy."""

from __future__ import annotations

import threading

import dkim
import pytest

from mailprefs.delivery import dkim_sign
from mailprefs.delivery.worker import Worker
from tests.support.dkim_keys import dns_for, make_keys
from tests.support.factories import campaign_due_now, person
from tests.support.smtp_sink import SmtpSink

DOMAIN = "news.example.test"


@pytest.fixture(scope="module")
def keys() -> dict[str, bytes]:
    return make_keys("rsa2026", "ed2026")


@pytest.fixture
def sink():
    with SmtpSink() as running:
        yield running


@pytest.fixture
def connections():
    return 4


@pytest.fixture
def app_config(sink, keys, tmp_path, connections):
    for name, key in keys.items():
        (tmp_path / f"{name}.pem").write_bytes(key)
    return {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": sink.port,
        "MAILPREFS_BATCH_SIZE": 10,
        "MAILPREFS_SMTP_CONNECTIONS": connections,
        "MAILPREFS_DKIM_DOMAIN": DOMAIN,
        "MAILPREFS_DKIM_SELECTOR": "rsa2026",
        "MAILPREFS_DKIM_KEY_FILE": str(tmp_path / "rsa2026.pem"),
        "MAILPREFS_DKIM_KEYS": f"ed2026:{tmp_path / 'ed2026.pem'}",
    }


@pytest.fixture
def signing_threads(monkeypatch):
    """The name of the thread each signature was made on (the real signing runs)."""
    names: list[str] = []
    real = dkim_sign.sign

    def spy(*args, **kwargs):
        names.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(dkim_sign, "sign", spy)
    return names


def verdicts(raw: bytes, dns) -> list[bool]:
    checker = dkim.DKIM(raw)
    count = raw.split(b"\r\n\r\n", 1)[0].lower().count(b"dkim-signature:")
    return [checker.verify(idx=i, dnsfunc=dns) for i in range(count)]


@pytest.mark.parametrize("connections", [1, 4])
def test_every_message_a_pooled_worker_sends_is_signed_and_verifies(
    app, db, sink, keys, signing_threads, connections
):
    """Promise: with a pool (or without), each message on the wire carries an RSA and an
    Ed25519 signature that dkimpy verifies; with a pool, they were made on the sender
    threads, not on the loop's thread."""
    with db.transaction() as s:
        for i in range(24):
            person(s, f"p{i:02d}@example.com", opted_in=("offers",))
        campaign_due_now(s)
    summary = Worker(app).run_due()
    assert summary.sent == 24
    assert len(sink.messages) == 24
    dns = dns_for(keys, DOMAIN)
    for _, _, raw in sink.messages:
        assert verdicts(raw, dns) == [True, True]
    assert len(signing_threads) == 24
    if connections > 1:
        assert all(name.startswith("smtp-sender-") for name in signing_threads)
    else:
        assert signing_threads == [threading.main_thread().name] * 24
