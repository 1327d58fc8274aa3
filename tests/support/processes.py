"""Run the real CLI (`flask --app wsgi mailprefs ...`) in subprocesses against a test
database and a real SMTP sink."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import SECRET_KEYS

ROOT = Path(__file__).resolve().parents[2]
FLASK = str(Path(sys.executable).with_name("flask"))


def environment(
    database_url: str, tmp_path: Path, *, smtp_port: int | None = None, **extra: str
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILPREFS_", "MAIL_"))}
    env.update(
        MAILPREFS_ENV="testing",
        DATABASE_URL=database_url,
        SECRET_KEY=SECRET_KEYS,
        MAILPREFS_HASH_KEY="test-hash-key",
        MAILPREFS_BASE_URL="https://mail.example.test",
        MAILPREFS_MAIL_CAPTURE_DIR=str(tmp_path / "mail"),
        MAILPREFS_INSTANCE_PATH=str(tmp_path / "instance"),
        PYTHONUNBUFFERED="1",
    )
    if smtp_port is not None:
        env.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=str(smtp_port))
    env.update(extra)
    return env


def flask(
    args: list[str], env: dict[str, str], *, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FLASK, "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = open(log, "w")  # noqa: SIM115  (closed when the process is reaped)
    return subprocess.Popen(
        [FLASK, "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )


def wait_until(predicate, timeout: float, step: float = 0.1) -> bool:
    """Poll `predicate` every `step` seconds for up to `timeout`; whether it came true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
