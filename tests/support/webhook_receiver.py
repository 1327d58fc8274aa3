"""A webhook receiver for tests, in its own process: verifies the signature of every
request and answers as it is told.

    python -m tests.support.webhook_receiver --dir DIR     (prints "PORT n" when ready)
    or start_receiver(DIR) / stop_receiver(proc)

Files in DIR steer it, read on every request, so a test changes them while it runs:
  secret   the endpoint's signing secret (a request whose signature does not verify
           with it is answered 401 and logged with "verified": false)
  mode     "ok" (200, the default), "500", "hang" (answers after 60 s: a timeout), or
           "fail-first N" (500 for the first N requests of each event id, then 200)
Every request is appended to DIR/received.jsonl: the event, the signature's verdict
and the status answered.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """What a receiver does (docs/reputation.md has the same snippet)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return hmac.compare_digest(expected.hexdigest(), parts.get("v1", ""))


class Handler(BaseHTTPRequestHandler):
    directory: Path
    tries: Counter = Counter()
    lock = threading.Lock()

    def log_message(self, *_args) -> None:  # quiet
        pass

    def _read(self, name: str, default: str = "") -> str:
        path = self.directory / name
        return path.read_text().strip() if path.exists() else default

    def do_POST(self) -> None:  # noqa: N802 (the http.server protocol)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        verified = verify(self._read("secret"), self.headers.get("Mailprefs-Signature", ""), body)
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        mode = self._read("mode", "ok")
        status = 200
        if not verified:
            status = 401
        elif mode == "500":
            status = 500
        elif mode == "hang":
            time.sleep(60)
        elif mode.startswith("fail-first"):
            with self.lock:
                key = (event or {}).get("id")
                Handler.tries[key] += 1
                if Handler.tries[key] <= int(mode.split()[1]):
                    status = 500
        record = {"path": self.path, "verified": verified, "status": status, "event": event}
        with self.lock, open(self.directory / "received.jsonl", "a") as log:
            log.write(json.dumps(record) + "\n")
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def received(directory: Path) -> list[dict]:
    path = directory / "received.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def start_receiver(directory: Path, timeout: float = 15.0) -> tuple[subprocess.Popen, int]:
    directory.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.webhook_receiver", "--dir", str(directory)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("PORT "):
            return proc, int(line.split()[1])
    proc.kill()
    raise RuntimeError("the webhook receiver did not start")


def stop_receiver(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    Handler.directory = Path(args.dir)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
