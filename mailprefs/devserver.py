"""`make run`: one process on one machine, for trying mailprefs out.

The web server, a worker thread and the scheduler (elected through the same lease as a
separate scheduler process would be, so starting one beside it stays safe) all run here
and stop together when the server does (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Mapping

import click
from flask import Flask
from werkzeug.serving import run_simple

from mailprefs.delivery.worker import Worker
from mailprefs.scheduling.service import SchedulerService

STOP_TIMEOUT = 30.0


def adopt_address(
    app: Flask, host: str, port: int, environ: Mapping[str, str] | None = None
) -> str:
    """Links in mail point where this server listens (`make run PORT=5301` gives links on
    5301), unless MAILPREFS_BASE_URL is set explicitly, which always wins. Returns the
    base URL in use. Called before the worker reads its settings."""
    env = os.environ if environ is None else environ
    if not env.get("MAILPREFS_BASE_URL"):
        # Listening on every interface: this machine reaches itself on the loopback.
        shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104
        if ":" in shown:
            shown = f"[{shown}]"  # an IPv6 address in a URL
        app.config["MAILPREFS_BASE_URL"] = f"http://{shown}:{port}"
    return app.config["MAILPREFS_BASE_URL"]


def run(app: Flask, host: str, port: int) -> None:
    base_url = adopt_address(app, host, port)
    worker = Worker(app)
    worker_thread = threading.Thread(
        target=worker.run_forever,
        args=(app.config["MAILPREFS_WORKER_IDLE_SECONDS"],),
        name="mailprefs-worker",
        daemon=True,
    )
    scheduler = SchedulerService(app)
    click.echo(
        f"mailprefs on http://{host}:{port}  (scheduler and worker in this process; mail "
        f"captured to {app.config['MAILPREFS_MAIL_CAPTURE_DIR']}; links in mail use "
        f"{base_url})"
    )
    previous = signal.signal(signal.SIGTERM, _interrupt)
    worker_thread.start()
    scheduler_thread = scheduler.start_thread()
    try:
        run_simple(host, port, app, threaded=True, use_reloader=False)
    finally:
        # The worker finishes the message in hand and gives back the rest; the scheduler
        # lets running jobs finish and releases its lease.
        worker.stop.set()
        scheduler.stop.set()
        worker_thread.join(STOP_TIMEOUT)
        scheduler_thread.join(STOP_TIMEOUT)
        signal.signal(signal.SIGTERM, previous)
        click.echo("mailprefs stopped")


def _interrupt(_signum: int, _frame: object) -> None:
    # SIGTERM stops the server the way Ctrl-C does, so the threads are stopped cleanly.
    raise KeyboardInterrupt
