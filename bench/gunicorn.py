"""Apps under `gunicorn -w N` on free ports, the CPU time their workers use, and wrk to
drive them: what the benchmarks of a web server share (one-click, create)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import fixtures
from bench.common import Figure

GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
WRK = os.environ.get("MAILPREFS_WRK", "/usr/bin/wrk")
SCRIPT = "bench.lua"

# The start of every wrk script: each thread gets its number, `id` (0, 1, ...).
LUA_THREAD_IDS = r"""
local threads = {}
function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end
"""

# The end of every wrk script: one line of figures the benchmark reads back.
LUA_DONE = r"""
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %d, "duration_us": %d, "non2xx": %d, "socket_errors": %d, ' ..
    '"p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


@contextlib.contextmanager
def workdir(name: str, lua: str) -> Iterator[Path]:
    """A scratch folder for one benchmark, holding its wrk script (`SCRIPT`): the thread
    numbers, `lua` (its init and request), and the RESULT line."""
    with tempfile.TemporaryDirectory(prefix=f"mailprefs-bench-{name}-") as tmp:
        folder = Path(tmp)
        (folder / SCRIPT).write_text(LUA_THREAD_IDS + lua + LUA_DONE)
        yield folder


def databases() -> list[str]:
    """The databases to measure: SQLite, and PostgreSQL when it answers. Stops the
    benchmark when wrk is not installed."""
    if not Path(WRK).exists():
        raise SystemExit(f"{WRK} not found: install it (apt-get install wrk)")
    kinds = ["sqlite"] + (["postgresql"] if fixtures.postgres_available() else [])
    if "postgresql" not in kinds:
        print("   PostgreSQL unreachable: measuring SQLite only", flush=True)
    return kinds


def wrk(
    url: str, folder: Path, seconds: int, threads: int, connections: int, *script_args: str
) -> dict[str, float]:
    """One wrk run of the script in `folder` (see `workdir`): its RESULT line."""
    command = [WRK, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    command += ["-s", str(folder / SCRIPT), url, "--", *script_args]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


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


@dataclass
class Rounds:
    """Each server's checked wrk results, round by round, and its warm-up's."""

    results: dict[str, list[dict[str, float]]]
    warmup: dict[str, dict[str, float]]
    load: tuple[str, str] = ("?", "?")  # the load average before and after

    def best(self, name: str) -> dict[str, float]:
        return best(self.results[name])

    def sent(self, name: str) -> int:
        """Requests wrk counted as answered, warm-up included."""
        return sum(r["requests"] for r in self.results[name]) + self.warmup[name]["requests"]

    def figures(
        self,
        name: str,
        baseline_name: str,
        *,
        min_ratio: float | None = None,
        p99_limit: float | None = None,
    ) -> list[Figure]:
        """mailprefs's best rate, its p99 and its workers' CPU per request, each beside
        the baseline's."""
        base, app = self.best("baseline"), self.best("mailprefs")
        return [
            Figure(f"{name}: mailprefs", app["rate"], "req/s", base["rate"], baseline_name,
                   min_ratio=min_ratio),
            Figure(f"{name}: mailprefs p99", app["p99"], "ms", base["p99"], baseline_name,
                   limit=p99_limit),
            Figure(f"{name}: mailprefs server CPU per request", app["cpu_us"], "us",
                   base["cpu_us"], baseline_name),
        ]  # fmt: skip

    def check(self, recorded: int, connections: int, what: str) -> None:
        """Exits unless every request mailprefs answered left its one record. wrk stops
        counting at the deadline with up to one request per connection still in flight,
        which the server completes: those may add records, never remove one."""
        sent, rounds = self.sent("mailprefs"), len(self.results["mailprefs"])
        if not sent <= recorded <= sent + connections * (rounds + 1):
            raise SystemExit(f"{what}: {recorded:,} recorded for {sent:,} POSTs")

    def report(self, label: str, details: str) -> None:
        """Prints the summary line of a measurement."""
        before, after = self.load
        print(
            f"   {label}: {self.summary()}; {details}; load average {before} before, {after} after",
            flush=True,
        )

    def summary(self, base: str = "baseline", app: str = "mailprefs") -> str:
        """One line: each app's best rate, p99 and CPU per request, and every round."""
        b, a = self.best(base), self.best(app)
        return (
            f"{base} {b['rate']:,.0f} req/s p99 {b['p99']:.1f} ms "
            f"({b['cpu_us']:,.0f} us server CPU/request); {app} {a['rate']:,.0f} req/s "
            f"p99 {a['p99']:.1f} ms ({a['cpu_us']:,.0f} us server CPU/request); "
            f"rounds {[round(r['rate']) for r in self.results[base]]} vs "
            f"{[round(r['rate']) for r in self.results[app]]}"
        )


def in_turn(
    servers: dict[str, tuple[subprocess.Popen, str]],
    workdir: Path,
    rounds: int,
    seconds: int,
    warmup_seconds: int,
    run: Callable[[str, str, int], dict[str, float]],
) -> Rounds:
    """Each server warmed up, then measured in turn `rounds` times (baseline, mailprefs,
    baseline, ...): on a shared machine, load that comes and goes then falls on both
    alike. `run(base_url, label, seconds)` is one wrk run (`label`: NAME-warmup,
    NAME-0, NAME-1, ...); each result gets its workers' CPU per request (`cpu_us`)."""
    warmup = {
        name: run(base_url, f"{name}-warmup", warmup_seconds)
        for name, (_, base_url) in servers.items()
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
    for i in range(rounds):
        for name, (server, base_url) in servers.items():
            cpu = cpu_seconds(server)
            result = run(base_url, f"{name}-{i}", seconds)
            result["cpu_us"] = (cpu_seconds(server) - cpu) / result["requests"] * 1e6
            results[name].append(checked(name, result, workdir))
    return Rounds(results, warmup)


def measure(
    apps: dict[str, str],
    env: dict[str, str],
    workdir: Path,
    workers: int,
    timing: tuple[int, int, int],
    run: Callable[[str, str, int], dict[str, float]],
) -> Rounds:
    """The apps under gunicorn, measured `in_turn`; `timing` is (rounds, seconds,
    warm-up seconds)."""
    before = _load()
    with servers(apps, env, workdir, workers) as running:
        measured = in_turn(running, workdir, *timing, run)
    measured.load = (before, _load())
    return measured


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]
