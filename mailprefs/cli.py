"""`flask --app wsgi mailprefs ...`: the commands ops and deployments run."""

from __future__ import annotations

import signal
import sys
import threading
import time

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from mailprefs import migrate as migrations
from mailprefs.domain import apikeys, audit, consent, users
from mailprefs.domain.errors import DomainError
from mailprefs.extensions import get_db

group = AppGroup("mailprefs", help="mailprefs administration and processes.")


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def run_migrations() -> None:
    database = get_db()
    migrations.upgrade(database)
    with database.transaction() as session:
        changed = migrations.sync_reference_data(session, current_app.config)
    click.echo(
        "database is at the latest revision"
        + (f"; updated: {', '.join(changed)}" if changed else "")
    )


@group.command("migrate")
def migrate_command() -> None:
    """Apply Alembic migrations and sync the topic catalogue."""
    run_migrations()


@click.command("db-upgrade")
def db_upgrade_command() -> None:
    """Apply Alembic migrations (same as `mailprefs migrate`)."""
    run_migrations()


@group.command("create-api-key")
@click.option(
    "--role", required=True, type=click.Choice(["marketing", "ops", "admin", "transactional"])
)
@click.option("--name", default=None, help="A label to recognise the key by.")
def create_api_key(role: str, name: str | None) -> None:
    """Create an API key; it is printed once, on the last line."""
    with get_db().transaction() as session:
        row, secret = apikeys.create(session, role, name)
        audit.record(session, "cli", "api_key.create", target_type="api_key", target_id=row.prefix)
        click.echo(f"created {row.role} key {row.prefix} ({row.name}); it is not shown again:")
    click.echo(secret)


@group.command("revoke-api-key")
@click.argument("prefix")
def revoke_api_key(prefix: str) -> None:
    """Revoke the API key with this prefix (e.g. mp_1a2b3c4d)."""
    try:
        with get_db().transaction() as session:
            row = apikeys.revoke(session, prefix)
            audit.record(
                session, "cli", "api_key.revoke", target_type="api_key", target_id=row.prefix
            )
    except DomainError as exc:
        _fail(exc.detail)
    click.echo(f"revoked {prefix}")


@group.command("list-api-keys")
def list_api_keys() -> None:
    """List API keys (prefix, role, name, last use); never the secrets."""
    with get_db().transaction() as session:
        for row in apikeys.list_keys(session):
            state = "revoked" if row.revoked_at else "active"
            used = row.last_used_at.isoformat() if row.last_used_at else "never"
            click.echo(f"{row.prefix}\t{row.role}\t{state}\tlast used {used}\t{row.name}")


@group.command("create-user")
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice(["marketing", "ops", "admin"]))
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def create_user(email: str, role: str, password: str) -> None:
    """Create a dashboard login."""
    try:
        with get_db().transaction() as session:
            user = users.create(session, email, role, password)
            audit.record(session, "cli", "user.create", target_type="user", target_id=str(user.id))
    except DomainError as exc:
        _fail(exc.detail)
    click.echo(f"created {role} login {email}")


@group.command("rebuild-consent")
@click.option(
    "--check", "mode", flag_value="check", default=True, help="Report differences (default)."
)
@click.option("--fix", "mode", flag_value="fix", help="Rewrite the projection from the ledger.")
def rebuild_consent(mode: str) -> None:
    """Rebuild topic states and account status from the consent ledger."""
    with get_db().transaction() as session:
        differences = consent.rebuild(session, fix=mode == "fix")
    for diff in differences:
        click.echo(f"{diff.subscriber}\t{diff.what}\tstored={diff.stored}\tledger={diff.rebuilt}")
    verb = "fixed" if mode == "fix" else "found"
    click.echo(f"{len(differences)} difference(s) {verb}")
    if differences and mode == "check":
        sys.exit(1)


@group.command("seed-demo")
def seed_demo() -> None:
    """Load demo topics, subscribers with consent history, keys and a login (once)."""
    from mailprefs.demo import seed

    seed(current_app)


@group.command("run-due")
@click.option("--quiet", is_flag=True, help="No progress bar, only the summary line.")
def run_due(quiet: bool) -> None:
    """Fire every due job, drain the outbox (send, retry what is due), then exit 0."""
    from mailprefs.delivery.progress import Progress
    from mailprefs.delivery.worker import Worker

    started = time.monotonic()
    with Progress.for_terminal(enabled=not quiet) as progress:
        worker = Worker(
            current_app._get_current_object(),
            on_progress=progress.advance,
            on_total=progress.expect,
        )
        _stop_on_sigterm(worker.stop)
        summary = worker.run_due()
    click.echo(
        f"run-due: fired {summary.fired} campaign(s); sent {summary.sent}, "
        f"blocked {summary.blocked}, failed {summary.failed}, retrying later "
        f"{summary.retrying} in {time.monotonic() - started:.1f} s"
    )


@group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--kind", type=click.Choice(["subscribers", "suppressions"]), default="subscribers")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "ndjson"]),
    default=None,
    help="Default: from the file name (.ndjson/.jsonl), else csv.",
)
@click.option("--dry-run", is_flag=True, help="Count and report; write nothing.")
@click.option(
    "--send-confirmations",
    is_flag=True,
    help="Queue a confirmation mail for each new pending double opt-in (never by default).",
)
@click.option("--quiet", is_flag=True, help="No progress bar, only the summary.")
def import_command(
    file: str, kind: str, fmt: str | None, dry_run: bool, send_confirmations: bool, quiet: bool
) -> None:
    """Import subscribers (or suppressions) from a CSV or NDJSON file; see docs/imports.md."""
    from mailprefs.delivery.importing import import_file

    fmt = fmt or ("ndjson" if file.endswith((".ndjson", ".jsonl")) else "csv")
    try:
        view = import_file(
            current_app._get_current_object(),
            file,
            kind=kind,
            fmt=fmt,
            dry_run=dry_run,
            send_confirmations=send_confirmations,
            progress=not quiet,
        )
    except DomainError as exc:
        _fail(exc.detail)
    counts = ", ".join(f"{k} {v}" for k, v in view["counts"].items())
    click.echo(f"import {view['id']}: {view['status']}{' (dry run)' if dry_run else ''}; {counts}")
    for problem in view["errors"]:
        click.echo(f"  line {problem['line']}: {problem['field']}: {problem['detail']}", err=True)
    if view["status"] != "done":
        sys.exit(1)


@group.command("fetch-bounces")
def fetch_bounces() -> None:
    """Read the bounce mailbox (MAILPREFS_BOUNCE_IMAP_URL) once: record each DSN and ARF
    report, delete what was recorded, move the rest aside."""
    from mailprefs.config import ConfigError
    from mailprefs.delivery.mailbox import BounceMailbox, describe

    try:
        summary = BounceMailbox(get_db(), current_app.config).fetch()
    except ConfigError as exc:
        _fail(str(exc))
    except (OSError, ConnectionError) as exc:
        _fail(f"cannot read {describe(current_app.config)}: {exc}")
    except Exception as exc:  # imaplib's errors (a refused login, a missing folder)
        _fail(f"cannot read {describe(current_app.config)}: {exc}")
    click.echo(summary.line())


@group.command("worker")
@click.option("--idle", type=float, default=None, help="Seconds to sleep when there is no work.")
def worker_command(idle: float | None) -> None:
    """The long-running worker: claim outbox rows and send them, until SIGTERM/SIGINT."""
    from mailprefs.delivery.worker import Worker

    app = current_app._get_current_object()
    worker = Worker(app)
    _stop_on_sigterm(worker.stop)
    click.echo(f"worker {worker.worker_id} started")
    worker.run_forever(idle if idle is not None else app.config["MAILPREFS_WORKER_IDLE_SECONDS"])
    click.echo(f"worker {worker.worker_id} stopped")


@group.command("scheduler")
def scheduler_command() -> None:
    """The long-running scheduler: stands by, fires jobs while elected leader, until
    SIGTERM/SIGINT (then lets running jobs finish and releases the leadership)."""
    from mailprefs.scheduling.service import SchedulerService

    service = SchedulerService(current_app._get_current_object())
    _stop_on_sigterm(service.stop)
    click.echo(f"scheduler {service.holder} started")
    service.run_forever()
    click.echo(f"scheduler {service.holder} stopped")


def _stop_on_sigterm(event: threading.Event) -> None:
    """SIGTERM/SIGINT: finish the message in hand, give back the rest, exit cleanly."""

    def handler(_signum: int, _frame: object) -> None:
        event.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@group.command("serve")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=5000, type=int)
def serve(host: str, port: int) -> None:
    """Development: serve the web app (with the in-process worker and scheduler)."""
    from mailprefs.devserver import run

    run(current_app._get_current_object(), host, port)


def init_app(app: Flask) -> None:
    app.cli.add_command(group)
    app.cli.add_command(db_upgrade_command)
