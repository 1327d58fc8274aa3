"""mailprefs: send an organisation's email while keeping its privacy policy's promises."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask

from mailprefs import config as config_module

__all__ = ["create_app"]


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: configuration, extensions, blueprints, CLI. Nothing else."""
    instance_path = Path(
        os.environ.get("MAILPREFS_INSTANCE_PATH") or config_module.default_instance_path()
    )
    app = Flask(
        __name__,
        instance_path=str(instance_path),
        template_folder=str(config_module.TEMPLATES_DIR),
        static_folder=str(Path(__file__).resolve().parent / "static"),
    )
    settings = config_module.load()
    settings.update(test_config or {})
    app.config.update(config_module.finalise(settings, instance_path))

    from mailprefs import cli, extensions, logs, web

    # Every process (gunicorn, the worker, the scheduler, a CLI command) builds an app.
    logs.configure(app.config["MAILPREFS_LOG_FORMAT"])

    if app.config["MAILPREFS_PROXY_COUNT"]:
        # Behind N trusted proxies, take the client's address and scheme from their
        # X-Forwarded-* headers: consent evidence must record the person's IP.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = app.config["MAILPREFS_PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    extensions.init_app(app)
    web.init_app(app)
    cli.init_app(app)
    return app
