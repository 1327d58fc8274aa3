"""Apps under `gunicorn -w N` on free ports, and the CPU time their workers use: what the
benchmarks that drive a web server with wrk share (one-click, create)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench import fixtures

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


@contextlib.contextmanager
def servers(
    apps: dict[str, str], env: dict[str, str], workdir: Path, workers: int
) -> Iterator[dict[str, tuple[subprocess.Popen, str]]]:
    """Each app (name: gunicorn target) under `gunicorn -w workers`, each on a port of
    its own: {name: (process, url)}. Its log is `workdir/gunicorn-NAME.log`."""
    running: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for name, target in apps.items():
            port = free_port()
            log = workdir / f"gunicorn-{name}.log"
            with log.open("w") as handle:
                process = subprocess.Popen(
                    [GUNICORN, "-w", str(workers), "-b", f"127.0.0.1:{port}"]
                    + ["--log-level", "warning", target],
                    cwd=fixtures.ROOT,
                    env=env,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                )
            running[name] = (process, f"http://127.0.0.1:{port}")
            wait_ready(port, process, log)
        yield running
    finally:
        for process, _ in running.values():
            process.send_signal(signal.SIGTERM)
        for process, _ in running.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def cpu_seconds(master: subprocess.Popen) -> float:
    """CPU time (user + system) used so far by the gunicorn master's workers."""
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    ticks = 0
    for pid in children:
        with contextlib.suppress(FileNotFoundError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait_ready(port: int, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer in time:\n{log.read_text()[-3000:]}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def best(results: list[dict[str, float]]) -> dict[str, float]:
    """The round least disturbed by other processes (as `timeit` takes the minimum):
    the most requests per second, with that round's p99; CPU per request is the median
    over the rounds (it hardly moves with load)."""
    top = dict(max(results, key=lambda r: r["rate"]))
    top["cpu_us"] = sorted(r["cpu_us"] for r in results)[len(results) // 2]
    return top


def checked(name: str, result: dict[str, float], workdir: Path) -> dict[str, float]:
    """wrk's RESULT line with its rate and p99 (ms); exits on any non-2xx or socket error."""
    if result["non2xx"] or result["socket_errors"]:
        tail = (workdir / f"gunicorn-{name}.log").read_text()[-3000:]
        raise SystemExit(f"{name}: {result} (answers other than 2xx, or socket errors)\n{tail}")
    result["rate"] = result["requests"] / (result["duration_us"] / 1e6)
    result["p99"] = result["p99_us"] / 1000
    return result
