"""The CLI (docs/operations.md, "Commands"): keys printed once on the last line, logins,
rebuild-consent, seeding."""

from __future__ import annotations

from sqlalchemy import select

from mailprefs.domain.models import ApiKey, AuditEntry, TopicState, TopicSubscription, User
from tests.conftest import bearer
from tests.support.factories import person


def test_create_api_key_prints_the_key_on_the_last_line_and_stores_only_a_hash(
    runner, client, session
):
    result = runner.invoke(
        args=["mailprefs", "create-api-key", "--role", "marketing", "--name", "crm"]
    )
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert key.startswith("mp_")
    assert client.get("/api/v1/topics", headers=bearer(key)).status_code == 200
    row = session.scalar(select(ApiKey).where(ApiKey.name == "crm"))
    assert row.role == "marketing" and key.startswith(row.prefix)
    assert key not in (row.key_hash, row.prefix) and len(row.key_hash) == 64
    assert row.last_used_at is not None


def test_create_api_key_refuses_an_unknown_role(runner):
    result = runner.invoke(args=["mailprefs", "create-api-key", "--role", "root"])
    assert result.exit_code != 0 and "root" in result.output


def test_revoke_api_key(runner, client):
    key = (
        runner.invoke(args=["mailprefs", "create-api-key", "--role", "ops"])
        .output.strip()
        .splitlines()[-1]
    )
    prefix = "_".join(key.split("_")[:2])
    result = runner.invoke(args=["mailprefs", "revoke-api-key", prefix])
    assert result.exit_code == 0, result.output
    assert client.get("/api/v1/topics", headers=bearer(key)).status_code == 401
    listing = runner.invoke(args=["mailprefs", "list-api-keys"]).output
    assert prefix in listing and "revoked" in listing and key not in listing
    assert runner.invoke(args=["mailprefs", "revoke-api-key", "mp_nothing"]).exit_code == 2


def test_create_user_hashes_the_password_with_argon2(runner, session):
    result = runner.invoke(
        args=[
            "mailprefs",
            "create-user",
            "--email",
            "Ops@Example.com",
            "--role",
            "ops",
            "--password",
            "correct horse battery",
        ]
    )
    assert result.exit_code == 0, result.output
    user = session.scalar(select(User))
    assert user.email == "ops@example.com" and user.role == "ops"
    assert user.password_hash.startswith("$argon2id$")
    assert "correct horse" not in user.password_hash
    assert session.scalar(select(AuditEntry.action).where(AuditEntry.action == "user.create"))


def test_create_user_prompts_for_the_password(runner, session):
    result = runner.invoke(
        args=["mailprefs", "create-user", "--email", "a@example.com", "--role", "admin"],
        input="a long enough pass\na long enough pass\n",
    )
    assert result.exit_code == 0, result.output
    assert session.scalar(select(User.role)) == "admin"


def test_create_user_refuses_short_passwords_and_duplicates(runner):
    short = runner.invoke(
        args=[
            "mailprefs",
            "create-user",
            "--email",
            "a@example.com",
            "--role",
            "ops",
            "--password",
            "short",
        ]
    )
    assert short.exit_code == 2 and "12" in short.output
    ok = [
        "mailprefs",
        "create-user",
        "--email",
        "a@example.com",
        "--role",
        "ops",
        "--password",
        "x" * 12,
    ]
    assert runner.invoke(args=ok).exit_code == 0
    assert runner.invoke(args=ok).exit_code == 2


def test_rebuild_consent_check_reports_differences_and_fix_repairs(runner, db):
    with db.transaction() as s:
        alice = person(s, opted_in=("offers",))
        alice_id = alice.id
    assert runner.invoke(args=["mailprefs", "rebuild-consent", "--check"]).exit_code == 0
    with db.transaction() as s:
        s.scalar(
            select(TopicSubscription).where(TopicSubscription.subscriber_id == alice_id)
        ).state = TopicState.OPTED_OUT
    check = runner.invoke(args=["mailprefs", "rebuild-consent", "--check"])
    assert check.exit_code == 1
    assert "stored=opted_out" in check.output and "ledger=opted_in" in check.output
    assert runner.invoke(args=["mailprefs", "rebuild-consent", "--fix"]).exit_code == 0
    assert runner.invoke(args=["mailprefs", "rebuild-consent"]).exit_code == 0


def test_migrate_is_idempotent_under_both_names(runner):
    for args in (["mailprefs", "migrate"], ["db-upgrade"], ["mailprefs", "migrate"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
        assert "latest revision" in result.output


def test_seed_demo_runs_twice_and_prints_secrets_once(runner, client):
    first = runner.invoke(args=["mailprefs", "seed-demo"])
    assert first.exit_code == 0, first.output
    ops_key = next(line.split()[-1] for line in first.output.splitlines() if "ops API key" in line)
    assert client.get("/api/v1/topics", headers=bearer(ops_key)).status_code == 200
    assert "dashboard login: ops@example.com /" in first.output
    second = runner.invoke(args=["mailprefs", "seed-demo"])
    assert second.exit_code == 0 and "already present" in second.output
    assert "mp_" not in second.output
    assert runner.invoke(args=["mailprefs", "rebuild-consent", "--check"]).exit_code == 0
