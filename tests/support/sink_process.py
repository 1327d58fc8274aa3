"""The test relay (`tests.support.smtp_sink`) as a process of its own: start it, stop
it, read what it counted or wrote.

`start_sink_process(DIR)` / `stop_sink_process(proc)`; with `count_only=True`,
`stop_and_count(proc)` returns its `COUNT` report; `read_maildir(DIR)` parses what it
wrote. The relay's options (`delay_ms`, `max_connections`, `rate`, ...) are those of
`SmtpSink`.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import os
import signal
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def start_sink_process(
    maildir: Path,
    *,
    port: int = 0,
    drop_every: int = 0,
    timeout: float = 15.0,
    count_only: bool = False,
    pipelining: bool = True,
    delay_ms: float = 0,
    max_connections: int = 0,
    rate: float = 0,
) -> tuple[subprocess.Popen, int]:
    """Start the sink in its own process; returns it and its port once it listens.

    `count_only`: write nothing (`maildir` is not created; its parent holds the ready
    file); read the count with `stop_and_count(proc)`."""
    maildir = Path(maildir)
    (maildir.parent if count_only else maildir).mkdir(parents=True, exist_ok=True)
    ready = maildir.parent / f".{maildir.name}.sink-ready-{os.getpid()}-{time.time_ns()}"
    command = [sys.executable, "-m", "tests.support.smtp_sink", "--port", str(port)]
    if count_only:
        command += ["--count-only"]
    else:
        command += ["--maildir", str(maildir)]
    command += ["--ready-file", str(ready)]
    if drop_every:
        command += ["--drop-every", str(drop_every)]
    if not pipelining:
        command += ["--no-pipelining"]
    if delay_ms:
        command += ["--delay", str(delay_ms)]
    if max_connections:
        command += ["--max-connections", str(max_connections)]
    if rate:
        command += ["--rate", str(rate)]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    stdout = subprocess.PIPE if count_only else subprocess.DEVNULL
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stdout, text=count_only)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"the SMTP sink exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            stop_sink_process(proc)
            raise RuntimeError("the SMTP sink did not become ready in time")
        time.sleep(0.02)
    sink_port = int(ready.read_text())
    ready.unlink(missing_ok=True)
    return proc, sink_port


def stop_sink_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL if it does not go; returns the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def stop_and_count(proc: subprocess.Popen, timeout: float = 10.0) -> dict[str, Any]:
    """Stop a `count_only` sink process; returns its `COUNT` report (see `SmtpSink.stats`)."""
    stop_sink_process(proc, timeout)
    output = proc.stdout.read() if proc.stdout is not None else ""
    for line in output.splitlines():
        if line.startswith("COUNT "):
            return json.loads(line[len("COUNT ") :])
    raise RuntimeError(f"the SMTP sink exited ({proc.returncode}) without its count")


def maildir_files(maildir: Path) -> list[Path]:
    """The messages in a maildir, in the order they arrived."""
    folder = Path(maildir)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == ".eml" and not p.name.startswith("."))


def read_maildir(maildir: Path) -> list[EmailMessage]:
    """Every message the sink process wrote, parsed, in arrival order."""
    messages = []
    for path in maildir_files(maildir):
        with contextlib.suppress(FileNotFoundError):
            messages.append(
                email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            )
    return messages
