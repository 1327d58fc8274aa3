"""The benchmarks run and report: each one, in --quick mode, prints its figures.

Speed itself lives in `make bench` (docs/testing.md, "Benchmarks"), not here: on a shared
machine a timing assertion would only measure the neighbours. This checks that every
benchmark still runs end to end and prints its figures, so `make bench` cannot rot.
"""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(
    m.name[len("bench_") :]
    for m in pkgutil.iter_modules([str(ROOT / "bench")])
    if m.name.startswith("bench_")
)
# A figure line: "  name: 1,234.5 unit ..." (see bench.common.Figure.line).
FIGURE = re.compile(r"^  \S.*: -?[\d,]+\.\d \S+", re.MULTILINE)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_runs_in_quick_mode_and_prints_its_figures(name):
    """Promise: `python -m bench NAME --quick` finishes and prints at least one figure
    (exit status 1 only says a target was missed, which a smoke run does not judge)."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", name, "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert f"== {name}" in done.stdout
    figures = FIGURE.findall(done.stdout)
    assert figures, done.stdout + done.stderr
