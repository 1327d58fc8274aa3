"""`make run`: one process on one machine, for trying mailprefs out."""

from __future__ import annotations

import click
from flask import Flask
from werkzeug.serving import run_simple


def run(app: Flask, host: str, port: int) -> None:
    click.echo(
        f"mailprefs on http://{host}:{port}  (mail captured to "
        f"{app.config['MAILPREFS_MAIL_CAPTURE_DIR']})"
    )
    run_simple(host, port, app, threaded=True, use_reloader=False)
